# deputy in a container: built in one stage, run non-root in a small one, the brain on a
# volume. Build: docker build -t deputy .  Run:
#   docker run -e DEPUTY_SECRET -e SLACK_APP_TOKEN -e SLACK_BOT_TOKEN \
#     -v deputy-brain:/var/lib/deputy -v $PWD/deputy.toml:/etc/deputy/deputy.toml:ro deputy
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin deputy

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/deputy --create-home deputy \
    && mkdir -p /etc/deputy && chmod 0700 /var/lib/deputy
COPY --from=build /src/target/release/deputy /usr/local/bin/deputy
USER deputy
WORKDIR /var/lib/deputy
# The brain: keep it on a volume, it is the users' linked accounts.
VOLUME ["/var/lib/deputy"]
ENV DEPUTY_LOG_FORMAT=json
EXPOSE 8080
# [brain] path = "/var/lib/deputy/data" in the config; the built-in packs need no folder.
ENTRYPOINT ["/usr/local/bin/deputy", "--config", "/etc/deputy/deputy.toml"]
CMD ["run"]
