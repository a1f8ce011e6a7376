# Build: a release binary with the locked dependency set.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# make: jemalloc (the allocator) is built from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY ui ./ui
RUN cargo build --release --locked && strip target/release/logs-distributor

# Run: a small Debian base, non-root, data on a volume.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin distributor \
    && mkdir -p /data && chown distributor /data
COPY --from=build /src/target/release/logs-distributor /usr/local/bin/logs-distributor
USER 10001
VOLUME ["/data"]
ENV LD_LISTEN=0.0.0.0:8080 LD_DATA_DIR=/data LD_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/logs-distributor"]
