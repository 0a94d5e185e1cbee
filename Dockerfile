# syntax=docker/dockerfile:1

# chainbroker container image.
#
#   docker build -t chainbroker .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/config.yaml:/etc/chainbroker/config.yaml:ro" \
#     -e CHAINBROKER_DOMAIN_A_SECRET -e CHAINBROKER_DOMAIN_B_SECRET \
#     chainbroker
#
# The CMD listens on 0.0.0.0:8080 and 0.0.0.0:9090 by flag (--http-addr,
# --grpc-addr), whatever the mounted config's listen.http and listen.grpc say:
# the config's defaults (127.0.0.1) are the container's own loopback, which
# nothing outside the container could reach. To listen elsewhere, pass your
# own arguments (docker run ... chainbroker serve --config ... --grpc-addr ...).
#
# No HEALTHCHECK: the image has no shell or curl, and orchestrators probe
# over the network instead: /healthz (liveness) and /readyz (readiness) over
# HTTP (on listen.admin when set), or the gRPC health service on 9090
# (service "" for liveness, chainbroker.v1.ChainService for readiness).

# ---- build -------------------------------------------------------------------
# Compile on the build host's platform and cross-compile for the target one
# (BuildKit fills in BUILDPLATFORM, TARGETOS and TARGETARCH).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
ARG TARGETOS
ARG TARGETARCH
# Static binary (no cgo, so it runs on distroless/static), without local paths
# or debug symbols.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/chainbroker ./cmd/chainbroker

# ---- runtime -----------------------------------------------------------------
# No shell, no package manager; CA certificates and tzdata included (needed for
# https calls to the authorization servers and rediss://).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chainbroker /chainbroker
USER nonroot:nonroot
# 8080: REST (grpc-gateway), 9090: gRPC, 8081: the admin listener when the
# config sets listen.admin (deploy/kubernetes does).
EXPOSE 8080 9090 8081
ENTRYPOINT ["/chainbroker"]
CMD ["serve", "--config", "/etc/chainbroker/config.yaml", "--grpc-addr", "0.0.0.0:9090", "--http-addr", "0.0.0.0:8080"]
