# Dockerfile: the asya-state-proxy-nats-kv-buffered-cas connector image.
#
# Build stage: the same scripts/deps.sh and make as CI and the README's quick start.
# Runtime stage (last, the default target): debian:12-slim with only the runtime libraries (scripts/deps.sh --runtime),
# a non-root user, `asya-state serve` (sidecar mode) as the default command, and the preload
# library at /usr/lib/asya/ so an init container can copy it into a shared volume:
#   cp /usr/lib/asya/*.so /asya/
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN ./scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make clean && make -j"$(nproc)" all && make install DESTDIR=/out PREFIX=/usr

# demo: the runtime plus python3, for compose.yaml's demo service (`--target demo`).
FROM debian:12-slim AS demo
COPY scripts/deps.sh /tmp/deps.sh
RUN /tmp/deps.sh --runtime && apt-get install -y -qq --no-install-recommends python3 >/dev/null \
    && rm -rf /var/lib/apt/lists/* /tmp/deps.sh \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin asya
COPY --from=build /out/usr/bin/asya-state /usr/bin/asya-state
COPY --from=build /out/usr/lib/asya/ /usr/lib/asya/
USER 10001:10001

# runtime (the default target): the connector image.
FROM debian:12-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="asya-state-proxy-nats-kv-buffered-cas" \
      org.opencontainers.image.description="Asya state proxy connector nats-kv-buffered-cas: NATS JetStream KV, buffered writes, compare-and-set; sidecar (asya-state serve) and LD_PRELOAD library" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/deliveryhero/asya-state-nats" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY scripts/deps.sh /tmp/deps.sh
RUN /tmp/deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/deps.sh \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin asya
COPY --from=build /out/usr/bin/asya-state /usr/bin/asya-state
COPY --from=build /out/usr/lib/asya/ /usr/lib/asya/
USER 10001:10001
ENV CONNECTOR_SOCKET=/var/run/asya/connector.sock
CMD ["asya-state", "serve"]
