# syntax=docker/dockerfile:1
# Images for the two binaries, as the Helm chart expects them:
#
#   docker build --target operator -t ghcr.io/example/podscaler/operator:0.1.0 .
#   docker build --target webhook  -t ghcr.io/example/podscaler/webhook:0.1.0 .
#
# The build stage compiles both release binaries once (the stage is shared between targets).
# The runtime images are distroless: glibc and CA certificates, no shell, no package manager,
# and a numeric non-root user, so the chart's runAsNonRoot, readOnlyRootFilesystem and dropped
# capabilities hold. TLS is rustls with ring: no OpenSSL at run time.
#
# Not built in this repository's CI (its machine has no container engine); the Rust toolchain
# version matches the one CI builds with.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin podscaler-operator --bin podscaler-webhook \
 && install -D -m 0755 target/release/podscaler-operator /out/podscaler-operator \
 && install -D -m 0755 target/release/podscaler-webhook /out/podscaler-webhook

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/podscaler-operator /podscaler-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/podscaler-operator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS webhook
COPY --from=build /out/podscaler-webhook /podscaler-webhook
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/podscaler-webhook"]
