# syntax=docker/dockerfile:1.7
#
# Static egress image: a CGO-free binary on distroless (CA certificates, tzdata,
# uid 65532 "nonroot", no shell). Build:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) \
#                -t ghcr.io/egress-proxy/egress:dev .
#
# Run (mount a directory of *.hcl over /etc/egress; it replaces the default):
#
#   docker run --rm -p 3128:3128 -p 127.0.0.1:9090:9090 \
#              -v "$PWD/my-config:/etc/egress:ro" ghcr.io/egress-proxy/egress:dev

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# Dependencies first, so source edits reuse this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/egress ./cmd/egress
# Check the config baked in below with the binary just built (skipped when
# cross-compiling: the binary would not run on the build platform).
COPY --chmod=0644 <<'HCL' /out/etc/egress/egress.hcl
# Default config of the container image. Mount your own directory over
# /etc/egress to replace it. Listens on all addresses (the container's network
# is the boundary); accepts clients from private ranges only; denies the
# shipped social-media list. The shipped lists live in /usr/share/egress/lists.
proxy {
  listen = "0.0.0.0:3128"
}

admin {
  listen = "0.0.0.0:9090"
}

category "social-media" {
  description = "Social networks and short-video apps"
  files       = ["/usr/share/egress/lists/social-media.txt"]
}

segment "private-networks" {
  sources = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
  default = "allow"
  rule "no-social-media" {
    action     = "deny"
    categories = ["social-media"]
  }
}
HCL
RUN mkdir -p /usr/share/egress && cp -r config/lists /usr/share/egress/lists \
 && if [ "$(go env GOOS)/$(go env GOARCH)" = "${TARGETOS}/${TARGETARCH}" ]; then \
      /out/egress validate /out/etc/egress; \
    fi

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="egress" \
      org.opencontainers.image.description="HTTPS egress proxy: per-segment allow/deny without decrypting TLS" \
      org.opencontainers.image.source="https://github.com/egress-proxy/egress"
COPY --from=build /out/egress /egress
COPY --from=build /out/etc/egress /etc/egress
COPY --from=build /src/config/lists /usr/share/egress/lists
USER 65532:65532
# 3128 explicit proxy, 9090 admin (/metrics /healthz /readyz /proxy.pac).
# Transparent listeners (8443, 8080) are opt-in in the config.
EXPOSE 3128 9090
ENTRYPOINT ["/egress"]
CMD ["run", "-config", "/etc/egress"]
