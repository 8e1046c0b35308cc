# tracker-gitops-e2e/pebble:2.4 — Debian's pebble 2.4 (Let's Encrypt's ACME
# test server) on an empty base. The test mounts its configuration, HTTPS
# certificate and key on /pebble. Built by tests/e2e/images.sh, which stages
# rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin:/bin
ENTRYPOINT ["/usr/bin/pebble"]
CMD ["-config", "/pebble/config.json"]
