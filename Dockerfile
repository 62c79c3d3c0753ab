# syntax=docker/dockerfile:1
# The ferry image: one static-ish binary that runs as the controller (`ferry controller`)
# and inside the data mover pods it starts (`ferry data-mover ...`).
#
#   docker build -t ferry:0.1.0 .

# ---- build ----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
# cmake and clang for the C parts of dependencies (aws-lc for TLS, zstd).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Without default features: the shipped binary has no `demo` or `bench` and no simulator in it.
# Cache mounts keep the registry and build artifacts between builds; the binary is copied out
# of the cached target directory so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferry --no-default-features \
 && install -D -m 0755 target/release/ferry /out/ferry

# ---- run ------------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc only, no shell; the :nonroot tag runs as uid/gid 65532, the
# user the Deployment rendered by `ferry install` asks for.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ferry /usr/local/bin/ferry
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["--help"]
