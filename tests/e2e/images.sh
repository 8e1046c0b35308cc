#!/usr/bin/env bash
# Builds the local Docker images the end-to-end tests deploy, without any
# registry: FROM scratch plus files copied from this machine (binaries, the
# shared libraries `ldd` reports, the dynamic loader, a static busybox).
#
#   images.sh [all|tracker|prometheus|caddy|pebble|mariadb|backup]...  (default: all)
#
#   tracker-gitops-e2e/tracker:3.0.0     torrust-tracker 3.0.0 from crates.io
#                                        (see .ci/install), release-image layout
#   tracker-gitops-e2e/prometheus:2.42   Debian's prometheus, prom/prometheus layout
#   tracker-gitops-e2e/caddy:2.6         Debian's caddy, caddy image layout
#   tracker-gitops-e2e/pebble:2.4        Debian's pebble (ACME test server)
#   tracker-gitops-e2e/mariadb:10.11     Debian's mariadb-server, the official
#                                        images' environment (mariadb-entry.sh)
#   tracker-gitops-e2e/backup:1          the backup service's tools: busybox,
#                                        flock, sqlite3, mariadb-client
#
# Each image carries the label org.tracker-gitops.inputs-hash (sha256 of
# everything that went in); an image whose label matches is not rebuilt.
# Env: TRACKER_BIN_DIR (default: the .ci/install cache), FORCE=1 to rebuild.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TRACKER_BIN_DIR=${TRACKER_BIN_DIR:-/var/cache/tracker-gitops/torrust-tracker-3.0.0/bin}
BUSYBOX=${BUSYBOX:-/bin/busybox}
TRACKER_IMAGE=tracker-gitops-e2e/tracker:3.0.0
PROMETHEUS_IMAGE=tracker-gitops-e2e/prometheus:2.42
CADDY_IMAGE=tracker-gitops-e2e/caddy:2.6
PEBBLE_IMAGE=tracker-gitops-e2e/pebble:2.4
MARIADB_IMAGE=tracker-gitops-e2e/mariadb:10.11
BACKUP_IMAGE=tracker-gitops-e2e/backup:1
HASH_LABEL=org.tracker-gitops.inputs-hash

die() { printf 'images.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'images.sh: %s\n' "$*" >&2; }

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/tg-e2e-images.XXXXXX")
trap 'rm -rf -- "$STAGE"' EXIT

# copy_file ROOTFS SRC [DEST]: copy SRC (following symlinks) to DEST in ROOTFS.
copy_file() {
  local rootfs=$1 src=$2 dest=${3:-$2}
  mkdir -p "$rootfs$(dirname "$dest")"
  cp -L --preserve=mode "$src" "$rootfs$dest"
}

# add_elf ROOTFS SRC DEST: an executable plus every shared object it loads
# and the dynamic loader, at the paths the loader resolves them to.
add_elf() {
  local rootfs=$1 src=$2 dest=$3 line lib
  [[ -x "$src" ]] || die "missing executable $src"
  copy_file "$rootfs" "$src" "$dest"
  local out
  if ! out=$(ldd "$src" 2>&1); then
    [[ "$out" == *"not a dynamic executable"* ]] && return 0
    die "ldd $src failed: $out"
  fi
  while IFS= read -r line; do
    [[ "$line" == *"not found"* ]] && die "$src: unresolved library: $line"
    lib=""
    if [[ "$line" =~ =\>\ (/[^ ]+) ]]; then
      lib=${BASH_REMATCH[1]}
    elif [[ "$line" =~ ^[[:space:]]*(/[^ ]+) ]]; then
      lib=${BASH_REMATCH[1]}   # the dynamic loader
    fi
    [[ -n "$lib" ]] && copy_file "$rootfs" "$lib"
  done <<<"$out"
}

add_busybox() {
  local rootfs=$1 applet
  [[ -x "$BUSYBOX" ]] || die "missing $BUSYBOX (apt-get install busybox-static)"
  if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
  fi
  copy_file "$rootfs" "$BUSYBOX" /bin/busybox
  while IFS= read -r applet; do
    [[ -n "$applet" && "$applet" != busybox ]] || continue
    [[ -e "$rootfs/bin/$applet" ]] || ln -s busybox "$rootfs/bin/$applet"
  done < <("$BUSYBOX" --list)
}

add_etc() {
  local rootfs=$1
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'nobody:x:65534:' >"$rootfs/etc/group"
  printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
}

# inputs_hash CTX: hash of the staged context (paths, modes, link targets,
# contents).
inputs_hash() {
  local ctx=$1
  (
    cd "$ctx"
    find . -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
      if [[ -L "$p" ]]; then
        printf 'L %s %s\n' "$p" "$(readlink "$p")"
      elif [[ -f "$p" ]]; then
        printf 'F %s %s %s\n' "$p" "$(stat -c %a "$p")" "$(sha256sum <"$p" | cut -d' ' -f1)"
      else
        printf 'D %s %s\n' "$p" "$(stat -c %a "$p")"
      fi
    done
  ) | sha256sum | cut -d' ' -f1
}

# build_image TAG CTX: build unless an image with the same inputs exists.
build_image() {
  local tag=$1 ctx=$2 hash current start old new
  hash=$(inputs_hash "$ctx")
  current=$(docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$tag" 2>/dev/null || true)
  if [[ "$current" == "$hash" && "${FORCE:-0}" != 1 ]]; then
    say "$tag is up to date"
    return 0
  fi
  say "building $tag"
  old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  start=$SECONDS
  # No buildx on this machine: the classic builder handles FROM scratch.
  if ! DOCKER_BUILDKIT=0 docker build --quiet --label "$HASH_LABEL=$hash" \
    -t "$tag" -f "$ctx/Dockerfile" "$ctx" >"$STAGE/build.log" 2>&1; then
    cat "$STAGE/build.log" >&2
    die "docker build of $tag failed"
  fi
  say "built $tag in $((SECONDS - start))s"
  new=$(docker image inspect -f '{{.Id}}' "$tag")
  if [[ -n "$old" && "$old" != "$new" ]]; then
    # Drop the replaced image (kept if a container still uses it).
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
}

# build_staged NAME TAG: tests/e2e/images/NAME.Dockerfile over $STAGE/NAME.
build_staged() {
  cp "$HERE/images/$1.Dockerfile" "$STAGE/$1/Dockerfile"
  build_image "$2" "$STAGE/$1"
}

build_tracker() {
  local rootfs="$STAGE/tracker/rootfs" b
  mkdir -p "$rootfs"
  for b in torrust-tracker http_health_check udp_tracker_client http_tracker_client tracker_checker; do
    [[ -x "$TRACKER_BIN_DIR/$b" ]] \
      || die "missing $TRACKER_BIN_DIR/$b: run .ci/install (builds torrust-tracker 3.0.0)"
    add_elf "$rootfs" "$TRACKER_BIN_DIR/$b" "/usr/bin/$b"
  done
  add_busybox "$rootfs"
  add_etc "$rootfs"
  install -D -m 0555 "$HERE/images/tracker-entry.sh" "$rootfs/usr/local/bin/entry.sh"
  build_staged tracker "$TRACKER_IMAGE"
}

build_prometheus() {
  local rootfs="$STAGE/prometheus/rootfs" d
  mkdir -p "$rootfs"
  add_elf "$rootfs" /usr/bin/prometheus /bin/prometheus
  add_elf "$rootfs" /usr/bin/promtool /bin/promtool
  add_busybox "$rootfs"
  add_etc "$rootfs"
  install -D -m 0644 "$HERE/images/prometheus.yml" "$rootfs/etc/prometheus/prometheus.yml"
  # Console templates and libraries (empty in Debian but for a README). The
  # web UI assets (/usr/share/prometheus/web, ~220 MB through symlinks) are
  # left out: the API and /-/healthy work without them.
  for d in consoles console_libraries; do
    mkdir -p "$rootfs/usr/share/prometheus/$d"
    if [[ -d "/etc/prometheus/$d" ]]; then
      cp -rL "/etc/prometheus/$d/." "$rootfs/usr/share/prometheus/$d/"
    fi
  done
  build_staged prometheus "$PROMETHEUS_IMAGE"
}

build_mariadb() {
  local rootfs="$STAGE/mariadb/rootfs" b
  mkdir -p "$rootfs"
  add_elf "$rootfs" /usr/sbin/mariadbd /usr/sbin/mariadbd
  for b in mariadb mariadb-admin my_print_defaults resolveip; do
    add_elf "$rootfs" "/usr/bin/$b" "/usr/bin/$b"
  done
  ln -s mariadb-admin "$rootfs/usr/bin/mysqladmin"
  # A shell script (/bin/sh: busybox here) with the SQL it loads.
  install -D -m 0755 /usr/bin/mariadb-install-db "$rootfs/usr/bin/mariadb-install-db"
  mkdir -p "$rootfs/usr/share"
  cp -r /usr/share/mysql "$rootfs/usr/share/mysql"
  add_busybox "$rootfs"
  add_etc "$rootfs"
  install -D -m 0644 "$HERE/images/mariadb.cnf" "$rootfs/etc/mysql/my.cnf"
  install -D -m 0555 "$HERE/images/mariadb-entry.sh" "$rootfs/usr/local/bin/entry.sh"
  build_staged mariadb "$MARIADB_IMAGE"
}

build_backup() {
  local rootfs="$STAGE/backup/rootfs" b
  mkdir -p "$rootfs"
  for b in sqlite3 mariadb mariadb-dump flock; do
    add_elf "$rootfs" "/usr/bin/$b" "/usr/bin/$b"
  done
  add_busybox "$rootfs"
  add_etc "$rootfs"
  build_staged backup "$BACKUP_IMAGE"
}

# build_program NAME TAG: Debian's /usr/bin/NAME with busybox, from
# images/NAME.Dockerfile.
build_program() {
  local name=$1 tag=$2 rootfs="$STAGE/$1/rootfs"
  mkdir -p "$rootfs"
  add_elf "$rootfs" "/usr/bin/$name" "/usr/bin/$name"
  add_busybox "$rootfs"
  add_etc "$rootfs"
  build_staged "$name" "$tag"
}

command -v docker >/dev/null || die "docker not found"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all)
      build_tracker
      build_prometheus
      build_program caddy "$CADDY_IMAGE"
      build_program pebble "$PEBBLE_IMAGE"
      build_mariadb
      build_backup
      ;;
    tracker) build_tracker ;;
    prometheus) build_prometheus ;;
    caddy) build_program caddy "$CADDY_IMAGE" ;;
    pebble) build_program pebble "$PEBBLE_IMAGE" ;;
    mariadb) build_mariadb ;;
    backup) build_backup ;;
    *) die "unknown image '$t' (all|tracker|prometheus|caddy|pebble|mariadb|backup)" ;;
  esac
done
