# The backup service's image (backup.image's default,
# ghcr.io/tracker-gitops/backup:1): Debian's packages only, no code of ours —
# the script comes with the rendered stack. busybox for sh and crond,
# util-linux for flock, sqlite3 for the online backup API, mariadb-client
# for mariadb-dump and the verifying restore.
#
#   docker build -t <your registry>/tracker-backup:1 -f images/backup.Dockerfile images
#
# then set backup.image to it (pinned by digest).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox util-linux sqlite3 mariadb-client \
 && rm -rf /var/lib/apt/lists/*
