# Build: the service's release binary with the locked dependency set. Cargo
# reads every workspace member's manifest and every target the root
# manifest names, so crates/ (also the crates the service links: http1, the
# reference analyzer) and benches/ are copied, with what the binary compiles
# in (ui/, docs/openapi.json); only the service binary is built.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# make: jemalloc (the allocator) is built from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY ui ./ui
COPY docs/openapi.json ./docs/openapi.json
RUN cargo build --release --locked --bin logs-distributor && strip target/release/logs-distributor

# Run: a small Debian base, non-root, data on a volume.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin distributor \
    && mkdir -p /data && chown distributor /data
COPY --from=build /src/target/release/logs-distributor /usr/local/bin/logs-distributor
# The system's CA certificates (the build stage's, from Debian's ca-certificates):
# the roots HTTPS to analyzers verifies against, beside an analyzer's own CA bundle.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 10001
VOLUME ["/data"]
ENV LD_LISTEN=0.0.0.0:8080 LD_DATA_DIR=/data LD_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/logs-distributor"]
