#!/bin/sh
# Entry script of the e2e tracker image. Like the release image's, it insists
# on TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER (sqlite3|mysql)
# and creates the data directories; unlike it, it keeps running as root
# (no su-exec, no chown of the mounted directories).
set -eu
driver=$(printf '%s' "${TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER:-}" | tr '[:upper:]' '[:lower:]')
case "$driver" in
  sqlite3 | mysql) ;;
  "")
    echo 'Error: "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER" was not set!' >&2
    exit 1
    ;;
  *)
    echo "Error: Unsupported Database Type: \"$driver\"." >&2
    exit 1
    ;;
esac
mkdir -p /var/lib/torrust/tracker/database /var/log/torrust/tracker /etc/torrust/tracker
exec "$@"
