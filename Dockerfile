# Container image for relayd (and relayctl, for health checks and operators).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t edgerelay/relayd .
#
# Multi-stage: the Go toolchain builds static binaries (CGO_ENABLED=0) and the
# shipped policy plugins; the final image is distroless "static" (no shell, no
# package manager) and runs as the unprivileged user 65532. See
# docs/operations.md, "Container image", for volumes, config and TLS.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make policies \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/usr/bin/relayd ./cmd/relayd \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/usr/bin/relayctl ./cmd/relayctl \
 && install -d /out/etc/relayd/policies /out/var/lib/relayd /out/run/relayd \
 && install -m 0644 build/policies/* /out/etc/relayd/policies/ \
 && install -m 0644 dist/relayd.hcl /out/etc/relayd/relayd.hcl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build --chown=65532:65532 /out/var/ /var/
COPY --from=build --chown=65532:65532 /out/run/ /run/
COPY --from=build /out/etc/ /etc/
COPY --from=build /out/usr/bin/ /usr/bin/
USER 65532:65532
# State (store, wazero cache) and the socket directory, shared with the
# upstream service's container so it can reach relayd.sock.
VOLUME ["/var/lib/relayd", "/run/relayd"]
# App API, metrics (set metrics.address = "0.0.0.0:9480" to scrape from outside).
EXPOSE 8480 9480
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["/usr/bin/relayctl", "-socket", "/run/relayd/relayd.sock", "health"]
ENTRYPOINT ["/usr/bin/relayd"]
CMD ["-config", "/etc/relayd/relayd.hcl"]
