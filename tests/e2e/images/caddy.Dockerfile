# tracker-gitops-e2e/caddy:2.6 — Debian's caddy 2.6 on an empty base (no
# registry here), laid out like the upstream caddy image: /usr/bin/caddy,
# /etc/caddy/Caddyfile, state in /data and /config (XDG_DATA_HOME,
# XDG_CONFIG_HOME), runs as root. A static busybox provides sh and wget for
# healthchecks. Built by tests/e2e/images.sh, which stages rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin:/bin \
    XDG_CONFIG_HOME=/config \
    XDG_DATA_HOME=/data
RUN mkdir -p /config /data /tmp && chmod 1777 /tmp
EXPOSE 80 443
# No VOLUME (upstream declares /config and /data): anonymous volumes would
# leak in tests; mount a named volume on /data to keep certificates.
WORKDIR /srv
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
