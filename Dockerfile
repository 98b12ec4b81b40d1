# The webhook image: build the release binary, run it as non-root in a small runtime image.
#   docker build -t mysql-webhook:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# build.rs compiles the built-in policies for wasm32-unknown-unknown and embeds them in the
# binary; rust-toolchain.toml declares the toolchain and its targets.
RUN rustup toolchain install
RUN cargo build --release --locked --bin mysql-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/mysql-webhook /usr/local/bin/mysql-webhook
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/mysql-webhook"]
CMD ["serve", "--tls-cert", "/certs/tls.crt", "--tls-key", "/certs/tls.key"]
