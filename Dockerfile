# syntax=docker/dockerfile:1.7
#
# One multi-stage build for every service; SERVICE picks the binary of the final image:
#
#   docker build --build-arg SERVICE=payment -t kafka-microservices/payment:dev .
#
# Stages: `planner` reduces the workspace to a dependency recipe (cargo-chef), `builder` compiles
# the dependencies from that recipe alone — a layer that stays cached until Cargo.toml/Cargo.lock
# change — then the workspace, and the final stage copies one stripped binary onto distroless
# (glibc, libgcc, OpenSSL's libssl3 and the CA bundle; no shell, no package manager), running as
# an unprivileged user. The binaries link libssl3 dynamically for Kafka's TLS and SCRAM, so the
# runtime base must carry the same OpenSSL 3 major version as the builder: both are Debian 12.
# Expected size: about 32 MB per service image (distroless/cc-debian12 ~23 MB + a ~9 MB stripped
# binary, measured with `cargo build --release`); the goal is under 40 MB.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_SUITE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS chef
# librdkafka is compiled from source by rdkafka-sys: it needs a C toolchain, make, perl,
# pkg-config and OpenSSL's headers for TLS and SCRAM (zlib is built in statically).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libssl-dev perl pkg-config python3 \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \;

# Picking the binary is a stage of its own, so SERVICE does not invalidate the builder's cache.
FROM builder AS pick
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "set --build-arg SERVICE=<order|payment|notification|inventory|stream-processor|accounts|sensor|alerting|dashboard|loadgen|kafka-console>" >&2; exit 1; } \
    && test -x "/out/${SERVICE}" || { echo "no service binary named '${SERVICE}'" >&2; exit 1; } \
    && cp "/out/${SERVICE}" /service

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.source="https://github.com/kafka-microservices/kafka-microservices" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.title="${SERVICE}"
COPY --from=pick /service /usr/local/bin/service
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/service"]
