# hoard's container image: the binary and nothing else it does not need.
#   docker build -t hoard .
# Build stage: the release binary (rustc 1.95, as the project pins).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY bench ./bench
RUN cargo build --release --locked --bin hoard && strip target/release/hoard

# Runtime: Debian slim with CA certificates (for S3 endpoints over HTTPS), a
# non-root user, and the data dir as a volume.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/hoard --create-home hoard
COPY --from=build /src/target/release/hoard /usr/local/bin/hoard
USER 10001:10001
VOLUME /var/lib/hoard
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/hoard"]
CMD ["serve", "--listen", "0.0.0.0:9000", "--data-dir", "/var/lib/hoard"]
