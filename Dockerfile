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
# TARGETOS and TARGETARCH are set by BuildKit and by recent buildah; Debian 12's
# buildah (1.28) leaves them unset. They get no ARG default on purpose: BuildKit
# treats a default as a user value and would then ignore --platform
# (docker/buildx#510). The RUN lines fall back to linux and to the build
# machine's architecture instead.
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# The image's default config, a real file (Debian 12's buildah does not read
# heredocs). Mount your own directory over /etc/egress to replace it.
COPY deploy/image/egress.hcl /out/etc/egress/egress.hcl
# Dependencies first, so source edits reuse this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH:-$(go env GOARCH)}" \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/egress ./cmd/egress
# Check the baked-in config with the binary just built (skipped when
# cross-compiling: the binary would not run on the build platform).
RUN chmod 0644 /out/etc/egress/egress.hcl \
 && mkdir -p /usr/share/egress && cp -r config/lists /usr/share/egress/lists \
 && if [ "${TARGETOS:-linux}/${TARGETARCH:-$(go env GOARCH)}" = "$(go env GOOS)/$(go env GOARCH)" ]; then \
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
