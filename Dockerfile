# syntax=docker/dockerfile:1
# The obleth image: the one binary, built with the `dist` profile (release, optimized as
# one unit: less code resident; Cargo.toml says why), run as a non-root user on a
# read-only root filesystem.
#
#   docker build -t obleth:local .
#   docker run --read-only -v obleth-data:/var/lib/obleth -p 8080:8080 \
#     -e OBLETH_ADMIN_TOKEN=$(openssl rand -hex 24) \
#     -e OBLETH_UPSTREAM_BASE_URL=http://vllm:8000/v1 obleth:local
#
# The admin API and metrics listen on 127.0.0.1 inside the container unless
# OBLETH_LISTEN_ADMIN / OBLETH_LISTEN_METRICS say otherwise (Compose and the Helm chart
# set 0.0.0.0:9090 and 0.0.0.0:9091 in their configuration).
#
# Health: GET /healthz (liveness) and GET /readyz (readiness) on the admin port, 9090.
# The image has no curl: `obleth health` is the probe (Docker's HEALTHCHECK below, Compose);
# Kubernetes probes the port itself (httpGet). docs/deploy.md says more.

# === build ===
# The workspace's rust-version is 1.88; rust:1 is the newest 1.x.
FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads: the workspace, its lock file, the jemalloc options in
# .cargo/config.toml, and the console's committed build (embedded by obleth-console's
# build.rs, so no Node.js is needed here).
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY console/dist console/dist
# The registry and target caches survive between builds on the same builder (BuildKit);
# the binary is copied out of the cache mount, which is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p obleth \
    && install -D -m 0755 target/dist/obleth /out/obleth

# === runtime ===
# bookworm-slim rather than distroless: the same glibc as the build stage, and a shell
# for one-shot jobs such as Compose's seeding script (deploy/compose/seed.sh). TLS roots
# are compiled into the binary (webpki-roots); private CAs are files you mount and name
# in the configuration (database.url sslrootcert, redis_tls.ca_file,
# ledger.clickhouse_ca_file).
FROM debian:bookworm-slim AS runtime
# uid/gid 10001: above any distribution's system range, and the same number the Helm
# chart's securityContext sets.
RUN groupadd --system --gid 10001 obleth \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/obleth --no-create-home \
       --shell /usr/sbin/nologin obleth \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/obleth /etc/obleth
COPY --from=build /out/obleth /usr/local/bin/obleth

# The only directory obleth writes: the ledger's write-ahead log (and the SQLite files,
# if the embedded stores are used). Mount a volume here; the root filesystem can be
# read-only. It is the working directory, so the configuration's relative defaults
# (sqlite://obleth.db, obleth-usage.db, obleth-wal/) land in it. No OBLETH_* variables are
# set here: they would silently override a mounted configuration file.
WORKDIR /var/lib/obleth
VOLUME ["/var/lib/obleth"]
USER 10001:10001
EXPOSE 8080 9090 9091

# Readiness, not liveness: Docker marks the container unhealthy while the pod refuses
# traffic (the ledger full with on_full = "reject"). Never /metrics: it may need a token
# and says nothing about readiness.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["obleth", "health", "--url", "http://127.0.0.1:9090/readyz"]

ENTRYPOINT ["obleth"]
CMD ["serve"]
