# tracker-gitops-e2e/backup:1 — what the backup service needs, from Debian
# packages on an empty base (no registry here): busybox (sh, crond and the
# usual tools), util-linux's flock, sqlite3, and mariadb-client's mariadb and
# mariadb-dump. No entrypoint: the stack gives the command.
# Built by tests/e2e/images.sh, which stages rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin:/bin
RUN mkdir -p /tmp /backups && chmod 1777 /tmp
