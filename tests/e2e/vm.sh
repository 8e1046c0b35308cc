#!/usr/bin/env bash
# A throwaway "VM" for end-to-end tests: a real OpenSSH server on loopback
# that logs in a system user `tg-deploy` who may use the local Docker engine.
#
#   vm.sh start DIR   create DIR (keys, sshd_config, vm.env) and start sshd
#   vm.sh env DIR     print DIR/vm.env (shell-sourceable)
#   vm.sh stop DIR    stop that sshd, drop its key, remove DIR (idempotent)
#
# DIR/vm.env defines VM_HOST VM_PORT VM_USER VM_KEY VM_KNOWN_HOSTS_LINE
# VM_HOST_KEY (and VM_KNOWN_HOSTS, a file holding the known_hosts line).
# Must run as root. Several VMs (different DIRs) may run at once; they share
# the user. `stop` leaves the user, its docker group membership and the
# socket's group as they are: undoing them would break other running VMs.
set -euo pipefail

VM_USER=tg-deploy
MARKER=.tracker-gitops-vm
GLOBAL_LOCK=/run/tracker-gitops-vm.lock
DOCKER_SOCK=/var/run/docker.sock

die() { printf 'vm.sh: %s\n' "$*" >&2; exit 1; }

usage() { die "usage: vm.sh start|stop|env DIR"; }

abs_dir() {
  local d=$1
  [[ "$d" == /* ]] || d="$PWD/$d"
  printf '%s' "${d%/}"
}

sshd_pid() {
  # Print the pid of DIR's sshd if it is alive and really ours.
  local dir=$1 pid
  [[ -f "$dir/sshd.pid" ]] || return 1
  pid=$(<"$dir/sshd.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$dir/sshd_config"* ]] || return 1
  printf '%s' "$pid"
}

port_free() {
  [[ -z "$(ss -Hltn "sport = :$1")" ]]
}

ensure_user() {
  # Serialised: concurrent starts must not race on useradd/groupadd.
  exec 8>"$GLOBAL_LOCK"
  flock 8
  local sock_group
  if [[ -S "$DOCKER_SOCK" ]]; then
    sock_group=$(stat -c %G "$DOCKER_SOCK")
    if [[ "$sock_group" == root || "$sock_group" == UNKNOWN ]]; then
      # Socket owned by root's group only: give it a docker group.
      getent group docker >/dev/null || groupadd --system docker
      chgrp docker "$DOCKER_SOCK"
      chmod g+rw "$DOCKER_SOCK"
      printf 'vm.sh: changed group of %s from %s to docker (left as is on stop)\n' \
        "$DOCKER_SOCK" "$sock_group" >&2
      sock_group=docker
    fi
  else
    die "$DOCKER_SOCK not found: is the Docker engine running?"
  fi
  if ! id "$VM_USER" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "/home/$VM_USER" \
      --shell /bin/bash --groups "$sock_group" "$VM_USER"
  elif [[ " $(id -nG "$VM_USER") " != *" $sock_group "* ]]; then
    usermod -a -G "$sock_group" "$VM_USER"
  fi
  # '*' (not '!'): no password, but not "locked" for sshd without PAM.
  usermod -p '*' "$VM_USER"
  local home
  home=$(getent passwd "$VM_USER" | cut -d: -f6)
  install -d -m 0700 -o "$VM_USER" -g "$(id -gn "$VM_USER")" "$home/.ssh"
  touch "$home/.ssh/authorized_keys"
  chown "$VM_USER:$(id -gn "$VM_USER")" "$home/.ssh/authorized_keys"
  chmod 0600 "$home/.ssh/authorized_keys"
  chmod go-w "$home"
  cat "$DIR/id_ed25519.pub" >>"$home/.ssh/authorized_keys"
  exec 8>&-
}

remove_key() {
  local home comment
  [[ -f "$DIR/id_ed25519.pub" ]] || return 0
  id "$VM_USER" >/dev/null 2>&1 || return 0
  home=$(getent passwd "$VM_USER" | cut -d: -f6)
  [[ -f "$home/.ssh/authorized_keys" ]] || return 0
  comment=$(cut -d' ' -f3 "$DIR/id_ed25519.pub")
  [[ -n "$comment" ]] || return 0
  exec 8>"$GLOBAL_LOCK"
  flock 8
  local tmp="$home/.ssh/authorized_keys.tmp.$$"
  grep -vF -- " $comment" "$home/.ssh/authorized_keys" >"$tmp" || true
  chown "$VM_USER:$(id -gn "$VM_USER")" "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$home/.ssh/authorized_keys"
  exec 8>&-
}

write_config() {
  local port=$1
  cat >"$DIR/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AllowUsers $VM_USER
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
MaxStartups 50:30:100
MaxSessions 20
LogLevel INFO
EOF
}

cmd_start() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  if [[ -e "$DIR" ]]; then
    [[ -f "$DIR/$MARKER" ]] || [[ -z "$(ls -A "$DIR")" ]] \
      || die "$DIR exists and is not a vm.sh directory"
    if sshd_pid "$DIR" >/dev/null; then
      die "a VM is already running in $DIR"
    fi
  fi
  install -d -m 0700 "$DIR"
  touch "$DIR/$MARKER"
  rm -f "$DIR"/ssh_host_ed25519_key* "$DIR"/id_ed25519*
  local id
  id="tg-e2e-$(date +%s)-$$-$RANDOM"
  ssh-keygen -q -t ed25519 -N '' -C "$id-host" -f "$DIR/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C "$id" -f "$DIR/id_ed25519"
  ensure_user
  install -d -m 0755 /run/sshd

  local port="" try
  for try in 1 2 3 4 5 6 7 8; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_free "$port" || continue
    write_config "$port"
    /usr/sbin/sshd -t -f "$DIR/sshd_config" || die "sshd_config rejected"
    if /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"; then
      break
    fi
    port=""
    [[ $try -lt 8 ]] || break
  done
  [[ -n "$port" ]] || die "could not start sshd (see $DIR/sshd.log)"

  local i
  for ((i = 0; i < 100; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  ((i < 100)) || die "sshd did not accept connections on 127.0.0.1:$port"

  local host_key known_line
  host_key=$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")
  known_line="[127.0.0.1]:$port $host_key"
  printf '%s\n' "$known_line" >"$DIR/known_hosts"
  {
    printf '# written by tests/e2e/vm.sh start; every value is single-quoted\n'
    printf "VM_HOST='127.0.0.1'\n"
    printf "VM_PORT='%s'\n" "$port"
    printf "VM_USER='%s'\n" "$VM_USER"
    printf "VM_KEY='%s'\n" "$DIR/id_ed25519"
    printf "VM_KNOWN_HOSTS_LINE='%s'\n" "$known_line"
    printf "VM_HOST_KEY='%s'\n" "$host_key"
    printf "VM_KNOWN_HOSTS='%s'\n" "$DIR/known_hosts"
  } >"$DIR/vm.env"
  printf 'vm.sh: sshd for %s listening on 127.0.0.1:%s (%s)\n' "$VM_USER" "$port" "$DIR" >&2
}

cmd_stop() {
  [[ -e "$DIR" ]] || return 0
  [[ -f "$DIR/$MARKER" ]] || die "$DIR is not a vm.sh directory; not touching it"
  local pid i
  if pid=$(sshd_pid "$DIR"); then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.1
    done
    [[ ! -d "/proc/$pid" ]] || kill -9 "$pid" 2>/dev/null || true
  fi
  remove_key
  rm -rf -- "$DIR"
}

cmd_env() {
  [[ -f "$DIR/vm.env" ]] || die "no $DIR/vm.env: start the VM first"
  cat "$DIR/vm.env"
}

[[ $# -eq 2 ]] || usage
DIR=$(abs_dir "$2")
[[ "$DIR" != / && -n "$DIR" ]] || die "refusing DIR=$2"
# It ends up in sshd_config and vm.env unquoted by sshd: keep it plain.
[[ "$DIR" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "DIR may only contain letters, digits and . _ / + -"
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  *) usage ;;
esac
