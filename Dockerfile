# m4watch for Linux hosts (docker compose --profile linux up). On a Mac, run m4watch
# natively instead: a container cannot see the Mac's hardware.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/m4watch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/m4watch /usr/local/bin/m4watch
# The host's /proc and /sys are mounted read-only under /host (docker-compose.yml).
COPY config/docker.yml /etc/m4watch/m4watch.yml
VOLUME /var/lib/m4watch
EXPOSE 9977 8125/udp
ENTRYPOINT ["/usr/local/bin/m4watch", "--config", "/etc/m4watch/m4watch.yml"]
