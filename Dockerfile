# m4watch for Linux hosts (docker compose --profile linux up). On a Mac, run m4watch
# natively instead: a container cannot see the Mac's hardware.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# A position-dependent executable, as Go builds node_exporter and Prometheus: a PIE
# carries 1.1 MB of relocations the loader reads and writes 1.3 MB of `.data.rel.ro`
# at every start, private memory for the life of the process (BENCHMARKS.md, issue
# 17). The price is that the executable's own code is not placed at a random address
# (libraries, stack and heap still are), so it is this image's choice, not every
# build's: a plain `cargo build --release` keeps the platform default (PIE).
RUN cargo rustc --release --locked --bin m4watch -- -C link-arg=-no-pie \
    && strip target/release/m4watch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 m4watch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/m4watch \
       --shell /usr/sbin/nologin m4watch \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/m4watch
COPY --from=build /src/target/release/m4watch /usr/local/bin/m4watch
# The host's /proc and /sys are mounted read-only under /host (docker-compose.yml).
COPY config/docker.yml /etc/m4watch/m4watch.yml
# Not root: m4watch reads /proc, /sys and the Docker socket and writes only its data
# directory. The socket's group is added at run time (docker-compose.yml: group_add),
# since its id is the host's. From here on the lines match
# packaging/docker/Dockerfile.prebuilt, the image CI builds from a built binary.
USER 10001:10001
# glibc's allocator as the footprint figures were measured: one arena, no per-thread
# caches of freed chunks (issue 17 measured 0.5-0.8 and 0.8-1.1 MiB less resident;
# small allocations take the arena's lock). packaging/systemd/m4watch.service sets the same.
ENV MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.tcache_count=0
VOLUME /var/lib/m4watch
EXPOSE 9977 8125/udp
# The image has no curl or wget: m4watch asks its own /-/healthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["/usr/local/bin/m4watch", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/m4watch", "--config", "/etc/m4watch/m4watch.yml"]
