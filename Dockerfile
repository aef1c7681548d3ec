# syntax=docker/dockerfile:1
# The sketch-proxy container image, as examples/compose and examples/kubernetes use it
# (image sketch-proxy:latest).
#
#   docker build -t sketch-proxy:latest .
#   docker run -p 19090:19090 -v sketch-proxy-data:/data \
#     -e SKETCH_PROXY_UPSTREAM=http://prometheus:9090 sketch-proxy:latest
#
# Arguments given to `docker run` replace the default CMD below; set other flags as
# SKETCH_PROXY_* environment variables to keep it (docs/configuration.md).

FROM rust:1.95-bookworm AS build
# rust-toolchain.toml asks for `stable`, which rustup would download next to the image's
# own toolchain; build with the image's toolchain (the rust image sets RUST_VERSION).
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
WORKDIR /src
COPY . .
# The two build steps of the README. proxy/build.rs compiles the built-in plugins
# (quantile, frequency) for wasm32-wasip2 and the binary embeds them (include_bytes!).
RUN rustup target add wasm32-wasip2
RUN cargo build --release -p sketch-proxy

FROM debian:bookworm-slim
# ca-certificates: https downstreams and destinations with the system's CAs.
# /data: the remote-write queues and sketch snapshots, owned by nobody:nogroup
# (65534, as examples/kubernetes runs it); a new named volume mounted there takes
# this ownership.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data /etc/sketch-proxy \
 && chown 65534:65534 /data
COPY --from=build /src/target/release/sketch-proxy /usr/local/bin/sketch-proxy
# The built-in plugins are embedded in the binary: there is no plugin directory to
# copy. Custom plugins are loaded from plugins.dir only when the configuration sets it
# (unset by default), e.g. a volume mounted at /etc/sketch-proxy/plugins.
#
# A default configuration, to be replaced by mounting your own over it.
COPY <<'EOF' /etc/sketch-proxy/sketch-proxy.yml
# Default configuration of the sketch-proxy image (docs/configuration.md). Downstream:
# --upstream or SKETCH_PROXY_UPSTREAM. Remote write: --web.enable-remote-write-receiver.
ingest:
  queue_dir: /data/queue
sketches:
  data_dir: /data/sketches
EOF
USER 65534:65534
WORKDIR /data
EXPOSE 19090
# SIGTERM writes a sketch snapshot before exiting: give `docker stop` time (-t 120).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sketch-proxy"]
CMD ["--config.file=/etc/sketch-proxy/sketch-proxy.yml", "--web.listen-address=0.0.0.0:19090"]
