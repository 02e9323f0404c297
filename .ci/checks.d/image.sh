#!/usr/bin/env bash
# The Dockerfile, read by the container tooling Debian ships (buildah 1.28,
# the engine under podman). Base images cannot be pulled here, so this is a
# parse-and-dry-run check, not an image build. What it checks, exactly:
#
#   1. buildah parses the whole Dockerfile (a syntax error anywhere fails
#      before the first step) and lists the build stage's steps: their number
#      and their instructions must be the ones a plain reading of the file gives
#      (a heredoc that buildah does not understand turns its body into bogus
#      steps: "PROXY {", "}" ... and changes the count);
#   2. no build argument is reported missing except TARGETOS/TARGETARCH, which
#      have no ARG default on purpose (see the Dockerfile) and a fallback in
#      the RUN lines;
#   3. with empty local stand-ins for the base images (`buildah from scratch`,
#      tagged with the FROM names), buildah executes every step up to the first
#      RUN: ARG, WORKDIR and the COPY of deploy/image/egress.hcl and go.mod
#      (so .dockerignore lets the image config into the context); the first RUN
#      then fails for want of a shell in the stand-in, which is expected;
#   4. the build stage's RUN commands, run here by sh with TARGETOS and
#      TARGETARCH unset (as Debian 12's buildah leaves them), build the binary
#      and `egress validate` the baked-in config.
#
# Not checked: the final image (no base image, no container runtime here).
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { echo "ci: image.sh: $*"; }
fail() { echo "ci: image.sh: FAIL: $*" >&2; exit 1; }

if ! command -v buildah >/dev/null 2>&1; then
  echo "SKIP: buildah not installed: the Dockerfile was NOT parsed by Debian's tooling (apt-get install buildah; .ci/run does)" >&2
  exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
B=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
say "$(buildah --version)"

# A plain reading of the build stage: logical lines (continuations joined),
# comments and blank lines dropped, from its FROM to the next FROM.
mapfile -t want < <(awk '
  /^[[:space:]]*#/ && !cont { next }
  { line = cont ? line " " $0 : $0 }
  /\\$/ { sub(/\\$/, "", line); cont = 1; next }
  { cont = 0; if (line ~ /^[[:space:]]*$/) next; split(line, w, /[[:space:]]+/); print toupper(w[1]) }
' Dockerfile | awk '$1 == "FROM" { n++ } n == 1')
[ "${#want[@]}" -gt 3 ] || fail "could not read the build stage of the Dockerfile"
for kw in "${want[@]}"; do
  case "$kw" in
    FROM|ARG|RUN|COPY|ADD|WORKDIR|ENV|LABEL|USER|EXPOSE|ENTRYPOINT|CMD|VOLUME|SHELL|STOPSIGNAL|HEALTHCHECK|ONBUILD) ;;
    *) fail "not a Dockerfile instruction in the build stage: $kw" ;;
  esac
done

# Empty stand-ins for the base images, under the names the FROM lines use.
go_version=$(sed -n 's/^ARG GO_VERSION=//p' Dockerfile)
ctr=$("${B[@]}" from scratch)
"${B[@]}" commit -q "$ctr" localhost/egress-ci-stand-in >/dev/null
for img in "golang:$go_version" $(awk '$1 == "FROM" && $2 !~ /^--/ && $2 !~ /\$/ { print $2 }' Dockerfile); do
  "${B[@]}" tag localhost/egress-ci-stand-in "$img"
done

say "buildah build --pull=never (stand-in base images; stops at the first RUN)"
set +e
"${B[@]}" build --pull=never --network=none --layers=false -f Dockerfile . >"$WORK/build.log" 2>&1
set -e
sed 's/^/    [buildah] /' "$WORK/build.log" | head -40
steps=$(grep -c '^\[1/[0-9]*\] STEP ' "$WORK/build.log" || true)
total=$(sed -n 's/^\[1\/[0-9]*\] STEP 1\/\([0-9]*\):.*/\1/p' "$WORK/build.log" | head -1)
[ -n "$total" ] || fail "buildah did not start the build stage (parse error?)"
[ "$total" -eq "${#want[@]}" ] || fail "buildah sees $total steps in the build stage, a plain reading ${#want[@]} (heredoc or continuation misread?)"
i=0
while read -r kw; do
  [ "$kw" = "${want[$i]}" ] || fail "step $((i + 1)): buildah runs $kw, the Dockerfile says ${want[$i]}"
  i=$((i + 1))
done < <(sed -n 's/^\[1\/[0-9]*\] STEP [0-9]*\/[0-9]*: \([A-Za-z]*\).*/\1/p' "$WORK/build.log" | tr a-z A-Z)
last=$(sed -n 's/^\[1\/[0-9]*\] STEP [0-9]*\/[0-9]*: \([A-Za-z]*\).*/\1/p' "$WORK/build.log" | tail -1 | tr a-z A-Z)
[ "$last" = RUN ] || fail "buildah stopped at a $last step, not at the first RUN"
for ((j = 0; j < steps - 1; j++)); do
  [ "${want[$j]}" != RUN ] || fail "a RUN step before the last one executed?"
done
if grep 'missing ".*" build argument' "$WORK/build.log" | grep -v -e '"TARGETOS"' -e '"TARGETARCH"'; then
  fail "a build argument without default"
fi
grep -q 'COPY deploy/image/egress.hcl' "$WORK/build.log" || fail "the image config was not copied"
say "buildah: $total steps in the build stage, as written; $((steps - 1)) executed before the first RUN"

say "the build stage's RUN commands with TARGETOS/TARGETARCH unset"
mkdir -p "$WORK/out/etc/egress" "$WORK/src"
cp deploy/image/egress.hcl "$WORK/out/etc/egress/egress.hcl"
build=$(awk '
  { line = cont ? line " " $0 : $0 }
  /\\$/ { sub(/\\$/, "", line); cont = 1; next }
  { cont = 0; if (line ~ /^RUN / && line ~ /go build/) print line }
' Dockerfile | sed -e 's/^RUN //' -e 's/--mount=[^ ]* *//g')
[ -n "$build" ] || fail "no go build RUN line"
build=${build//\/out\//$WORK\/out\/}
env -u TARGETOS -u TARGETARCH VERSION=ci COMMIT=image-sh GOFLAGS=-mod=mod sh -c "$build"
"$WORK/out/egress" version | grep -q 'image-sh' || fail "-X main.commit did not reach the binary"
sed "s#/usr/share/egress/lists/#$PWD/config/lists/#g" deploy/image/egress.hcl >"$WORK/out/etc/egress/egress.hcl"
"$WORK/out/egress" validate "$WORK/out/etc/egress"
say ok
