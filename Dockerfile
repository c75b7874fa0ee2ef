# Build: docker build -t hookrelay .   Run: see docker-compose.yml
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
COPY templates templates
# Cargo.toml names the benches, so the manifest needs them to load.
COPY benches benches
RUN cargo build --release --locked --bin hookrelay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/hookrelay --uid 10001 hookrelay \
 && mkdir -p /var/lib/hookrelay /etc/hookrelay \
 && chown hookrelay /var/lib/hookrelay
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
COPY hooks.d /etc/hookrelay/hooks.d
ENV HOOKRELAY_LISTEN=0.0.0.0:8080 \
    HOOKRELAY_DATA_DIR=/var/lib/hookrelay \
    HOOKRELAY_HOOKS_DIR=/etc/hookrelay/hooks.d \
    HOOKRELAY_LOG_FORMAT=json
USER hookrelay
VOLUME /var/lib/hookrelay
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookrelay"]
CMD ["serve"]
