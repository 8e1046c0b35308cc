# tracker-gitops-e2e/mariadb:10.11 — Debian's mariadb-server 10.11 on an empty
# base (no registry here), speaking the official mysql/mariadb images'
# environment (MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD[_FILE],
# MYSQL_ROOT_PASSWORD[_FILE], MYSQL_RANDOM_ROOT_PASSWORD) and command
# (`mysqld --port=N`), data in /var/lib/mysql. See mariadb-entry.sh.
# Built by tests/e2e/images.sh, which stages rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin
RUN mkdir -p /var/lib/mysql /run/mysqld /tmp && chmod 1777 /tmp
EXPOSE 3306
ENTRYPOINT ["/usr/local/bin/entry.sh"]
CMD ["mariadbd"]
