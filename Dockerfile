# Dockerfile: the connector image asya-state-proxy-nats-kv-buffered-cas (asya-state-nats).
#
#   make image          scripts/base-image.sh (engine and base image), then this build
#
# Builds from the local images debian:12 and debian:12-slim only (no registry needed:
# scripts/base-image.sh makes them with debootstrap when they are missing); packages come from
# Debian's mirror through apt inside the build, so build with `--network host`. Few layers:
# with Docker's vfs storage driver every layer is a full copy of the file system.
#
# Stages (the classic builder builds every stage before --target, so the default target
# comes before the demo):
#   build    scripts/deps.sh --build and make, installed into /out with the backend's own
#            libnats and libprotobuf-c beside it (make install-bundle: the preload in other images)
#   runtime  the connector image: debian:12-slim, the runtime libraries (deps.sh --runtime),
#            user and group asya (10001:10001), `asya-state serve` as the default command on
#            CONNECTOR_SOCKET=/var/run/asya/state/connector.sock (a directory the user owns;
#            Asya's operator mounts an emptyDir there), HEALTHCHECK `asya-state health`, the
#            preload library and its backend in /usr/lib/asya/ for an init container to copy
#   demo     the runtime's libraries, user and programs plus python3 and nats-server, for
#            compose.yaml
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN ./scripts/deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make clean && make -j"$(nproc)" all && make install-bundle DESTDIR=/out PREFIX=/usr

FROM debian:12-slim AS runtime
COPY scripts/deps.sh /tmp/deps.sh
RUN /tmp/deps.sh --runtime && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/deps.sh \
    && groupadd --system --gid 10001 asya \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin asya \
    && install -d -o 10001 -g 10001 -m 0755 /var/run/asya /var/run/asya/state
COPY --from=build /out/usr/ /usr/
USER 10001:10001
ENV CONNECTOR_SOCKET=/var/run/asya/state/connector.sock
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["asya-state", "health", "--timeout", "3"]
CMD ["asya-state", "serve"]
# Last, so that a build without --build-arg VERSION (compose) shares every layer above.
# `make image` passes the file VERSION (the binaries read it at build time).
ARG VERSION=dev
LABEL org.opencontainers.image.title="asya-state-proxy-nats-kv-buffered-cas" \
      org.opencontainers.image.description="Asya state proxy connector nats-kv-buffered-cas: NATS JetStream KV, buffered writes, compare-and-set; sidecar (asya-state serve) and LD_PRELOAD library" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/deliveryhero/asya-state-nats" \
      org.opencontainers.image.licenses="Apache-2.0"

# demo: the runtime's libraries, user and programs plus python3 (the demo programs) and
# nats-server (compose.yaml's server). From debian:12-slim rather than the runtime, so that
# its package layer is kept when only the sources change: a rebuild copies the programs again.
FROM debian:12-slim AS demo
COPY scripts/deps.sh /tmp/deps.sh
RUN /tmp/deps.sh --runtime && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 nats-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/deps.sh \
    && groupadd --system --gid 10001 asya \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin asya
COPY --from=build /out/usr/ /usr/
USER 10001:10001
