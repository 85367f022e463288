# The `threeport` image: API server, migrations and controllers in one binary.
# Build: docker build -t ghcr.io/threeport/threeport:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p threeport-server --bin threeport

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/threeport /usr/local/bin/threeport
USER 65532:65532
EXPOSE 1323
ENTRYPOINT ["/usr/local/bin/threeport"]
