# syntax=docker/dockerfile:1
#
# wackamole as a container: a Rust builder stage and a small Debian runtime stage
# holding the binary, nftables (the gate's table is created once with `nft`) and
# nothing else. Configure it entirely with WACKAMOLE_* environment variables (see
# `wackamole run --help`); run it with the host's network and two capabilities:
#
#   docker build -t wackamole .
#   docker run -d --network host --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW \
#       -e WACKAMOLE_NODE_NAME=web1 -e WACKAMOLE_INTERFACE=eth0 ... wackamole
#
# With a binary built outside (`cargo build --release`, same Debian release), skip
# the toolchain stage:
#
#   docker build --build-arg BINARY_FROM=prebuilt -t wackamole .

ARG RUST_VERSION=1.88
ARG DEBIAN_RELEASE=bookworm
# `source` (build in the container) or `prebuilt` (take target/release/wackamole).
ARG BINARY_FROM=source

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS source
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin wackamole \
 && install -D -m 0755 target/release/wackamole /out/wackamole

FROM scratch AS prebuilt
COPY target/release/wackamole /out/wackamole

FROM ${BINARY_FROM} AS binary

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
COPY --from=binary /out/wackamole /usr/local/bin/wackamole
# The agent runs as a non-root user: file capabilities give it (and `nft`, which it
# runs once at start-up) exactly NET_ADMIN and NET_RAW, when the container is
# granted them, and nothing otherwise.
RUN setcap cap_net_admin,cap_net_raw+ep /usr/local/bin/wackamole \
 && setcap cap_net_admin+ep /usr/sbin/nft \
 && groupadd --gid 65532 wackamole \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wackamole
USER 65532:65532
ENV WACKAMOLE_METRICS_ADDR=127.0.0.1:9947 \
    WACKAMOLE_LOG_FORMAT=json
EXPOSE 7946/udp 9947/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["wackamole", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["wackamole", "run"]
