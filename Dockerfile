# syntax=docker/dockerfile:1
# toolq worker image.
#   docker build -t toolq .
#   docker run --rm -e TOOLQ_REDIS_URL=redis://worker:PASS@redis:6379 toolq
# Two stages: build the release binary with the full toolchain, then copy only
# the binary and config/ into a slim Debian image that runs as a non-root user.

# ---- build --------------------------------------------------------------------
# The rustc is pinned because link/hot-text.txt (build.rs) lists the functions
# a worker runs under the names this rustc gives them: another would build a
# binary that works the same and keeps more of its code resident.
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
# .dockerignore keeps target/, .git and ops/ out of the context.
COPY . .
# The cache mounts keep the crate registry and the target dir between builds
# (BuildKit). The binary is copied out because the target dir is a cache.
# `cargo build-static` (.cargo/config.toml) links glibc into the binary: the
# worker then maps no shared libraries and keeps 1 MB less resident.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build-static --locked \
    && install -m 0755 "target/$(rustc --print host-tuple)/release/toolq" \
       /usr/local/bin/toolq

# ---- runtime ------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to rediss:// and the weather API (TOOLQ_REDIS_CA_FILE
# adds a private CA). curl: the HEALTHCHECK below; the binary has no health
# subcommand. Versions are not pinned so security updates land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin toolq

# The worker reads config/toolq.toml (every key, commented, at its default)
# relative to its working directory; TOOLQ_* variables override it.
WORKDIR /app
COPY --from=builder /usr/local/bin/toolq /usr/local/bin/toolq
COPY --from=builder /src/config/ /app/config/

USER 10001:10001

# The side port: /healthz, /readyz, /health, /metrics.
ENV TOOLQ_HTTP_ADDR=0.0.0.0:9464
EXPOSE 9464

# SIGTERM starts a graceful stop: no new fetches, in-flight jobs get
# TOOLQ_SHUTDOWN_GRACE_S to finish, the rest go back to pending. Give the
# container a stop timeout longer than that grace (compose: 30s for 25s).
STOPSIGNAL SIGTERM

# Liveness only (/healthz): /readyz also depends on Redis, so a Redis outage
# would mark every worker unhealthy (and get them restarted by orchestrators
# that act on health) although they recover on their own.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9464/healthz"]

ENTRYPOINT ["toolq"]
CMD ["worker"]
