# argo-drift: the controller (`argo-drift`) and the Argo CD hooks (`argo-drift-presync`,
# `argo-drift-postsync`, `argo-drift-syncfail`) in one small image.
#   docker build -t ghcr.io/argo-drift/argo-drift:0.1.0 .
# Rust 1.95.0: the toolchain controller/link-order.txt was written with (its LLD places the
# functions `argo-drift diff` runs together; see controller/build.rs).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p argo-drift-controller -p argo-drift-hooks \
 && mkdir /out \
 && cp target/release/argo-drift target/release/argo-drift-presync \
       target/release/argo-drift-postsync target/release/argo-drift-syncfail /out/ \
 && strip /out/*

# Distroless: glibc and CA certificates, no shell, runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY config/policy.yaml /etc/argo-drift/policy.yaml
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/argo-drift"]
