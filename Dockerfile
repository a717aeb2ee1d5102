# Build stage: compile the bot in release mode.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY crates ./crates
# The manifest names the bench target, so cargo needs its file even for a plain build.
COPY benches ./benches
RUN cargo build --release --locked --bin trackly-bot

# Runtime stage: a slim image with CA certificates, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin trackly \
    && mkdir -p /data \
    && chown trackly /data
COPY --from=build /src/target/release/trackly-bot /usr/local/bin/trackly-bot
COPY config.toml.example /etc/trackly-bot/config.toml.example

# The database lives on a volume so that links and tickets survive a new container.
VOLUME ["/data"]
WORKDIR /data
ENV TRACKLY_BOT_DATABASE__PATH=/data/trackly-bot.db \
    TRACKLY_BOT_HTTP__LISTEN=0.0.0.0:9184 \
    RUST_LOG=info
EXPOSE 9184
USER trackly
# DISCORD_TOKEN and TRACKLY_BOT_ENCRYPTION_KEY must be passed at run time, never baked in.
# Settings come from TRACKLY_BOT_* variables, or from /data/config.toml when it exists.
ENTRYPOINT ["trackly-bot"]
CMD ["run"]
