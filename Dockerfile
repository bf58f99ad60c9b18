# syntax=docker/dockerfile:1
# One small non-root image with every AdMesh binary; the Helm chart picks the
# binary per Deployment (`command: ["/usr/local/bin/<service>"]`).
#   docker build -t admesh:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY common common
COPY bid-engine bid-engine
COPY ad-server ad-server
COPY queue-service queue-service
COPY analytics-service analytics-service
COPY agent-service agent-service
COPY edge edge
COPY loadgen loadgen
COPY src src
RUN cargo build --release --locked --workspace --bins --exclude admesh-loadgen \
 && mkdir /out \
 && cp target/release/admesh target/release/ad-server target/release/bid-engine \
       target/release/queue-service target/release/ad-processor \
       target/release/analytics-service target/release/agent-service target/release/edge /out/

# glibc and libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 8080 50051 50052 50053 50054 50055
ENTRYPOINT ["/usr/local/bin/admesh"]
CMD ["up"]
