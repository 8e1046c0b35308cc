#!/bin/sh
# Entry script of the e2e MariaDB image, after the official images': on an
# empty data directory it creates the system tables, the root account (its
# password from MYSQL_ROOT_PASSWORD[_FILE], or random), MYSQL_DATABASE and
# MYSQL_USER with all rights on it, through a server on a socket only; then
# it runs the server. `mysqld` runs mariadbd. Passwords go to the server on
# stdin, never in argv.
set -eu
if [ "${1:-}" = mysqld ]; then
  shift
  set -- mariadbd "$@"
fi
datadir=/var/lib/mysql
socket=/run/mysqld/init.sock

# NAME's value, or the content of the file NAME_FILE names.
file_env() {
  eval "file=\${${1}_FILE:-}"
  if [ -n "$file" ]; then cat "$file"; else eval "printf '%s' \"\${$1:-}\""; fi
}
# TEXT as an SQL string literal.
quoted() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g")"; }

if [ ! -d "$datadir/mysql" ]; then
  root=$(file_env MYSQL_ROOT_PASSWORD)
  if [ -z "$root" ]; then
    [ "${MYSQL_RANDOM_ROOT_PASSWORD:-}" = yes ] \
      || { echo "entry: set MYSQL_ROOT_PASSWORD[_FILE] or MYSQL_RANDOM_ROOT_PASSWORD=yes" >&2; exit 1; }
    root=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  fi
  password=$(file_env MYSQL_PASSWORD)
  mariadb-install-db --user=root --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
  mariadbd --user=root --datadir="$datadir" --skip-networking --socket="$socket" &
  pid=$!
  i=0
  until mariadb --socket="$socket" -uroot -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 300 ] || { echo "entry: the bootstrap server did not start" >&2; exit 1; }
    sleep 0.1
  done
  {
    printf "ALTER USER 'root'@'localhost' IDENTIFIED BY %s;\n" "$(quoted "$root")"
    # mariadb-install-db's other root accounts, without a password, would
    # match connections over the network before root@%.
    printf "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@'%s';\n" "$(uname -n)"
    printf "CREATE USER 'root'@'%%' IDENTIFIED BY %s;\n" "$(quoted "$root")"
    printf "GRANT ALL ON *.* TO 'root'@'%%' WITH GRANT OPTION;\n"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
      printf "CREATE DATABASE IF NOT EXISTS \`%s\`;\n" "$MYSQL_DATABASE"
      if [ -n "${MYSQL_USER:-}" ]; then
        printf "CREATE USER '%s'@'%%' IDENTIFIED BY %s;\n" "$MYSQL_USER" "$(quoted "$password")"
        printf "GRANT ALL ON \`%s\`.* TO '%s'@'%%';\n" "$MYSQL_DATABASE" "$MYSQL_USER"
      fi
    fi
    printf 'FLUSH PRIVILEGES;\n'
  } | mariadb --socket="$socket" -uroot
  kill "$pid"
  wait "$pid" || true
  echo "entry: initialised $datadir" >&2
fi
exec "$@"
