# syntax=docker/dockerfile:1
# driftwatch container image: built with Rust on Debian bookworm, run on bookworm-slim as a
# non-root user. Used by docker-compose.yml (`build: .`); on its own:
#
#   docker build -t driftwatch .
#   docker run --rm -p 9464:9464 -e DRIFTWATCH_KAFKA__BROKERS=kafka:9092 driftwatch
#
# The image's default configuration (/etc/driftwatch/driftwatch.toml) is every default of
# config/driftwatch.example.toml except [http] listen = "0.0.0.0:9464", so /metrics can be
# scraped from outside the container. Mount your own file over it, or override any key with
# DRIFTWATCH_<SECTION>__<KEY> (e.g. DRIFTWATCH_HTTP__BEARER_TOKEN: set one when the port is
# reachable by others, it guards POST /v1/models/{id}/retrain).

ARG RUST_VERSION=1

# ─── build ──────────────────────────────────────────────────────────────────────────────────
FROM rust:${RUST_VERSION}-bookworm AS builder

# librdkafka is built from source by rdkafka-sys (vendored: its configure script and make,
# which need perl, pkg-config and a C toolchain) and links zlib (libz-sys). Most of this is in
# the rust image already; listed so the build does not depend on the base image's choice.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo reads every target the manifest declares ([[bench]] files included) even when it
# builds only the binary.
COPY benches ./benches
# src/codec/avro.rs embeds schemas/*.avsc with include_str!.
COPY schemas ./schemas
COPY src ./src

# No debug info in the image (the release profile keeps some for profiling); symbols stay, so
# a panic's backtrace still has function names.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Cache mounts (BuildKit): the crates.io downloads and the target directory survive between
# builds, so a source change rebuilds driftwatch only, not librdkafka and every dependency.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin driftwatch \
 && install -m 0755 target/release/driftwatch /usr/local/bin/driftwatch

# ─── runtime ────────────────────────────────────────────────────────────────────────────────
FROM debian:bookworm-slim

# ca-certificates: TLS to brokers and to a schema registry (kafka.extra security.protocol =
# "ssl"/"sasl_ssl", https:// registry URLs). The binary needs nothing else beyond libc, libgcc
# and zlib, which the base image has.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 driftwatch \
 && useradd --system --uid 10001 --gid driftwatch --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin driftwatch

COPY --from=builder /usr/local/bin/driftwatch /usr/local/bin/driftwatch

# An empty configuration file is complete (every key has a default); this one only moves the
# HTTP endpoint off loopback, which inside a container nobody else could reach.
RUN mkdir -p /etc/driftwatch \
 && printf '%s\n' \
      '# driftwatch container defaults: every key of config/driftwatch.example.toml at its default,' \
      '# except the HTTP endpoint, which listens on all interfaces so /metrics can be scraped.' \
      '[http]' \
      'listen = "0.0.0.0:9464"' \
      > /etc/driftwatch/driftwatch.toml

USER 10001:10001
EXPOSE 9464

# /healthz answers 200 while the service loop is alive (503 once it stalls). The image has no
# curl: bash's /dev/tcp speaks the one HTTP request needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "/etc/driftwatch/driftwatch.toml"]
