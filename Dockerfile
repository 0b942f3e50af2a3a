# The berth container image: the static berth binary on an empty base.
#
# This Dockerfile has no Go build stage: it expects a prebuilt binary in the
# build context. No base image (golang, distroless...) can be pulled where
# berth is built and tested, and a FROM scratch image needs nothing but a
# static binary (CGO_ENABLED=0; SQLite is the pure-Go modernc.org/sqlite),
# the CA certificates for S3 over TLS and an empty /data owned by the
# runtime user. `make image` prepares exactly that and builds the image:
#
#   bin/image/berth                  CGO_ENABLED=0 go build -trimpath
#                                    -ldflags "-s -w -X main.version=$VERSION"
#   bin/image/ca-certificates.crt    copied from /etc/ssl/certs on the host
#   bin/image/data/                  an empty directory
#
# The build context is the repository root; .dockerignore sends only
# bin/image/ to the daemon.
FROM scratch

COPY bin/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/image/berth /berth
# The working data directory (blobs, SQLite database, uploads; scratch space
# with S3 and PostgreSQL), writable by the runtime user. Mount a volume here.
COPY --chown=65532:65532 bin/image/data/ /data/

# Non-root, numeric so that Kubernetes' runAsNonRoot can verify it without
# an /etc/passwd.
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 5000

ENTRYPOINT ["/berth"]
CMD ["serve", "--addr", ":5000", "--data-dir", "/data"]
