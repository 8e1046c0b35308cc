# tracker-gitops-e2e/tracker:3.0.0 — the torrust-tracker 3.0.0 binaries built
# from crates.io, on an empty base (no registry here). Mirrors the release
# image: binaries in /usr/bin, entry script, same paths, env and healthcheck;
# see tracker-entry.sh for what differs.
# Built by tests/e2e/images.sh, which stages rootfs/ (binaries, their shared
# libraries and the dynamic loader, a static busybox).
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    TORRUST_TRACKER_CONFIG_TOML_PATH=/etc/torrust/tracker/tracker.toml \
    USER_ID=1000 \
    UDP_PORT=6969 \
    HTTP_PORT=7070 \
    API_PORT=1212 \
    HEALTH_CHECK_API_PORT=1313 \
    TZ=Etc/UTC \
    RUNTIME=release
RUN mkdir -p /var/lib/torrust/tracker/database /var/log/torrust/tracker /etc/torrust/tracker /tmp \
 && chmod 1777 /tmp
EXPOSE 6969/udp 7070/tcp 1212/tcp 1313/tcp
# No VOLUME (the release image declares the three directories as volumes):
# anonymous volumes outlive recreated containers and would leak in tests.
HEALTHCHECK --interval=5s --timeout=5s --start-period=3s --retries=3 \
  CMD /usr/bin/http_health_check http://localhost:1313/health_check || exit 1
ENTRYPOINT ["/usr/local/bin/entry.sh"]
CMD ["/usr/bin/torrust-tracker"]
