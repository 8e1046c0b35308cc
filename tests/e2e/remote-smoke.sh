#!/usr/bin/env bash
# Development aid: drives src/deploy/remote.sh over real ssh against the
# loopback "VM" of vm.sh, with the e2e images of images.sh and a local bare
# repository holding a hand-written stack on branch deploy/demo:
#   good deploy, no-op re-deploy, bad config rolled back, commit not on the
#   branch, file drift, two concurrent deploys (one gets the lock error),
#   status in and out of sync, secrets kept out of argv/logs/files.
# Must run as root; cleans up everything it started. Takes about a minute.
# SMOKE_LOGS=DIR keeps the remote script's stdout/stderr/exit codes there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
REMOTE_SH="$TOP/src/deploy/remote.sh"
BRANCH=deploy/demo
PROJECT="tg-smoke-$$"
REMOTE_ROOT="/home/tg-deploy/tg-smoke-$$"
HEALTH_URL=http://127.0.0.1:1313/health_check
TOKEN="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
PASSWORD="p@ss w'o\"rd \$HOME $(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"

WORK=$(mktemp -d /tmp/tg-remote-smoke.XXXXXX)
chmod 0755 "$WORK"
pass=0
fail=0

cleanup() {
  local rc=$?
  set +e
  if [[ -n ${SMOKE_LOGS:-} ]]; then
    mkdir -p "$SMOKE_LOGS" && cp "$WORK"/*.out "$WORK"/*.err "$WORK"/*.rc "$SMOKE_LOGS"/ 2>/dev/null
  fi
  docker compose -p "$PROJECT" down -v --remove-orphans --timeout 5 >/dev/null 2>&1
  docker rmi "tracker-gitops-e2e/prometheus:smoke-$$" >/dev/null 2>&1
  rm -rf -- "$REMOTE_ROOT"
  runuser -u tg-deploy -- git config --global --unset-all safe.directory "^$WORK/repo.git\$" 2>/dev/null
  [[ -s /home/tg-deploy/.gitconfig ]] || rm -f /home/tg-deploy/.gitconfig
  "$HERE/vm.sh" stop "$WORK/vm"
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
g() { git -c user.name=smoke -c user.email=smoke@localhost "$@"; }

"$HERE/images.sh"
"$HERE/vm.sh" start "$WORK/vm"
# shellcheck source=/dev/null
source "$WORK/vm/vm.env"

SSH=(ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$VM_KNOWN_HOSTS"
  -i "$VM_KEY" -p "$VM_PORT" "$VM_USER@$VM_HOST")

# remote NAME OP ARGS...: run remote.sh with the secrets block prepended;
# stdout/stderr/exit code/ssh pid land in $WORK/NAME.{out,err,rc,pid}.
remote() {
  local name=$1 rc=0 pid
  shift
  {
    printf "TG_SECRETS_B64='TRACKER_ADMIN_TOKEN=%s\nMYSQL_PASSWORD=%s'\n" \
      "$(printf '%s' "$TOKEN" | base64 -w0)" "$(printf '%s' "$PASSWORD" | base64 -w0)"
    cat "$REMOTE_SH"
  } | "${SSH[@]}" bash -s -- "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  pid=$!
  printf '%s\n' "$pid" >"$WORK/$name.pid"
  wait "$pid" || rc=$?
  printf '%s\n' "$rc" >"$WORK/$name.rc"
}
rc_of() { cat "$WORK/$1.rc"; }
deploy() { remote "$1" deploy "$REMOTE_ROOT" "$WORK/repo.git" "$BRANCH" "$2" 0 60 "$HEALTH_URL"; }
has_line() { grep -qxF -- "$2" "$WORK/$1.out"; }
lacks_line() { ! has_line "$@"; }

# ---------------------------------------------------------------- the repo
g init -q --bare "$WORK/repo.git"
# The repository is root's; let the deploy user read it (git refuses
# repositories of other users, also as a clone source).
runuser -u tg-deploy -- git config --global --add safe.directory "$WORK/repo.git"
g init -q -b "$BRANCH" "$WORK/src"
S="$WORK/src"
mkdir -p "$S/storage/tracker/etc" "$S/storage/tracker/lib/database" "$S/storage/prometheus/etc"
touch "$S/storage/tracker/lib/database/.gitkeep"

write_tracker_toml() { # THRESHOLD
  cat >"$S/storage/tracker/etc/tracker.toml" <<EOF
[metadata]
app = "torrust-tracker"
purpose = "configuration"
schema_version = "2.0.0"

[logging]
threshold = "$1"

[core]
listed = false
private = false

[core.database]
driver = "sqlite3"
path = "/var/lib/torrust/tracker/database/sqlite3.db"

[[udp_trackers]]
bind_address = "0.0.0.0:6969"

[[http_trackers]]
bind_address = "0.0.0.0:7070"

[http_api]
bind_address = "0.0.0.0:1212"

[health_check_api]
bind_address = "127.0.0.1:1313"
EOF
}
cat >"$S/storage/prometheus/etc/prometheus.yml" <<'EOF'
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
EOF

write_compose() { # TRACKER_HEALTH_INTERVAL [PROMETHEUS_IMAGE]
  local th ph
  th=$(sha256sum <"$S/storage/tracker/etc/tracker.toml" | cut -c1-16)
  ph=$(sha256sum <"$S/storage/prometheus/etc/prometheus.yml" | cut -c1-16)
  cat >"$S/docker-compose.yml" <<EOF
name: $PROJECT
services:
  tracker:
    image: tracker-gitops-e2e/tracker:3.0.0
    pull_policy: never # local images only: never ask a registry
    restart: unless-stopped
    environment:
      TORRUST_TRACKER_CONFIG_TOML_PATH: /etc/torrust/tracker/tracker.toml
      TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER: sqlite3
      TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN: \${TRACKER_ADMIN_TOKEN:?TRACKER_ADMIN_TOKEN is not set}
    volumes:
      - ./storage/tracker/etc/tracker.toml:/etc/torrust/tracker/tracker.toml:ro
      - ./storage/tracker/lib:/var/lib/torrust/tracker
    labels:
      tracker-gitops.config-hash: "$th"
    healthcheck:
      test: ["CMD", "/usr/bin/http_health_check", "$HEALTH_URL"]
      interval: $1
      timeout: 5s
      retries: 3
      start_period: 5s
  prometheus:
    image: ${2:-tracker-gitops-e2e/prometheus:2.42}
    pull_policy: never
    restart: unless-stopped
    depends_on: [tracker]
    environment:
      SMOKE_PASSWORD: \${MYSQL_PASSWORD:-}
    volumes:
      - ./storage/prometheus/etc/prometheus.yml:/etc/prometheus/prometheus.yml:ro
      - prometheus_data:/prometheus
    labels:
      tracker-gitops.config-hash: "$ph"
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/healthy"]
      interval: 2s
      timeout: 5s
      retries: 10
volumes:
  prometheus_data: {}
EOF
}
commit() { # MESSAGE -> prints sha
  g -C "$S" add -A >/dev/null
  g -C "$S" commit -q -m "$1"
  g -C "$S" rev-parse HEAD
}
push() { g -C "$S" push -q "$WORK/repo.git" "HEAD:refs/heads/$BRANCH"; }

# ---------------------------------------------------------------- 0. first deploy fails
write_tracker_toml bogus
write_compose 2s
C0=$(commit "first commit, tracker config the tracker rejects")
push
deploy d0 "$C0"
check "failing first deploy exits 1" [ "$(rc_of d0)" = 1 ]
check "failing first deploy reports failed" has_line d0 "@@tracker-gitops result failed $C0"
check "failing first deploy writes no deployed" [ ! -e "$REMOTE_ROOT/deployed" ]

# ---------------------------------------------------------------- 1. deploy
write_tracker_toml info
write_compose 2s
C1=$(commit "good stack")
push
start=$SECONDS
deploy d1 "$C1"
check "good deploy exits 0 ($((SECONDS - start))s)" [ "$(rc_of d1)" = 0 ]
check "good deploy reports deployed" has_line d1 "@@tracker-gitops result deployed $C1"
check "steps announced in order" diff <(grep -o 'step [a-z]*' "$WORK/d1.out" | tr '\n' ' ') \
  <(printf 'step lock step fetch step checkout step secrets step pull step up step health ')
check "stdout carries only markers" [ -z "$(grep -v '^@@tracker-gitops ' "$WORK/d1.out")" ]
check "admin token reached the tracker" docker exec "$PROJECT-tracker-1" \
  wget -qO /dev/null "http://127.0.0.1:1212/api/v1/stats?token=$TOKEN"
check "secret with quotes/spaces/\$ round-trips" \
  [ "$(docker exec "$PROJECT-prometheus-1" sh -c 'printf %s "$SMOKE_PASSWORD"')" = "$PASSWORD" ]
check "secrets.env is 0600" [ "$(stat -c %a "$REMOTE_ROOT/secrets.env")" = 600 ]

# ---------------------------------------------------------------- 2. no-op
t=$SECONDS
deploy d2 "$C1"
check "re-deploy is a no-op ($((SECONDS - t))s)" has_line d2 "@@tracker-gitops result noop $C1"
check "no-op exits 0" [ "$(rc_of d2)" = 0 ]
remote s1 status "$REMOTE_ROOT" "$BRANCH"
check "status in sync" [ "$(rc_of s1)" = 0 ]
check "status lists the tracker" has_line s1 "service tracker running healthy"

# ---------------------------------------------------------------- 3. bad config
write_tracker_toml bogus
write_compose 2s
C2=$(commit "tracker config the tracker rejects")
push
t=$SECONDS
deploy d3 "$C2"
check "bad deploy exits 1 ($((SECONDS - t))s)" [ "$(rc_of d3)" = 1 ]
check "bad deploy rolled back to C1" has_line d3 "@@tracker-gitops result rolled-back $C1"
check "rollback step announced" has_line d3 "@@tracker-gitops step rollback"
check "tracker logs shown on stderr" grep -q 'UnknownVariant' "$WORK/d3.err"
check "deployed still C1" [ "$(cat "$REMOTE_ROOT/deployed")" = "$C1" ]
check "tracker healthy again" [ "$(docker inspect -f '{{.State.Health.Status}}' "$PROJECT-tracker-1")" = healthy ]
remote s2 status "$REMOTE_ROOT" "$BRANCH"
check "status out of sync (branch ahead)" [ "$(rc_of s2)" = 1 ]
check "status shows the branch tip" has_line s2 "branch: $C2"

# ---------------------------------------------------------------- 4. not on branch
g -C "$S" checkout -q -b stray
echo stray >"$S/stray.txt"
C_STRAY=$(commit "not on the deploy branch")
g -C "$S" push -q "$WORK/repo.git" HEAD:refs/heads/stray
g -C "$S" checkout -q "$BRANCH"
deploy d4 "$C_STRAY"
check "commit not on branch exits 2" [ "$(rc_of d4)" = 2 ]
check "commit not on branch says so" grep -q 'is not on the deploy branch' "$WORK/d4.err"

# ---------------------------------------------------------------- 5. drift
echo '# edited by hand' >>"$REMOTE_ROOT/checkout/storage/prometheus/etc/prometheus.yml"
sed -i '0,/config-hash: ".*"/s//config-hash: "edited"/' "$REMOTE_ROOT/checkout/docker-compose.yml"
remote s3 status "$REMOTE_ROOT" "$BRANCH"
check "status reports file drift" has_line s3 "drift: file storage/prometheus/etc/prometheus.yml"
check "status reports compose file drift" has_line s3 "drift: file docker-compose.yml"
check "status reports container drift" has_line s3 "drift: container tracker"
check "no container drift for prometheus" lacks_line s3 "drift: container prometheus"

# ---------------------------------------------------------------- 6. concurrency
# C3 and C4 run prometheus from a tag that step 8 removes, so that rolling
# back to C4 fails there.
OLD_PROM="tracker-gitops-e2e/prometheus:smoke-$$"
docker tag tracker-gitops-e2e/prometheus:2.42 "$OLD_PROM"
write_tracker_toml warn
write_compose 12s "$OLD_PROM" # first healthcheck after 12 s: holds the lock > 10 s
C3=$(commit "good change, slow to become healthy")
push
t=$SECONDS
deploy d5 "$C3" &
p1=$!
sleep 1
deploy d6 "$C3" &
p2=$!
wait "$p1" "$p2"
codes="$(rc_of d5) $(rc_of d6)"
check "concurrent deploys: one 0, one 4 (got $codes, $((SECONDS - t))s)" \
  [ "$codes" = "0 4" -o "$codes" = "4 0" ]
check "lock error names the holder" grep -hq "deploy in progress by tg-deploy@.* commit=$C3" "$WORK/d5.err" "$WORK/d6.err"
remote s4 status "$REMOTE_ROOT" "$BRANCH"
check "status in sync after C3 (drift repaired)" [ "$(rc_of s4)" = 0 ]

# ---------------------------------------------------------------- 7. ssh drops
write_tracker_toml error
write_compose 2s "$OLD_PROM"
C4=$(commit "good change, deployed by a client that goes away")
push
deploy d7 "$C4" &
p1=$!
sleep 2
kill "$(cat "$WORK/d7.pid")" # the ssh client
wait "$p1" || true
for ((i = 0; i < 60; i++)); do
  [[ "$(tail -n 1 "$REMOTE_ROOT/audit.log")" == *"commit=$C4 "* ]] && break
  sleep 1
done
check "deploy finished after the ssh client went away" \
  grep -q "commit=$C4 result=deployed" "$REMOTE_ROOT/audit.log"

# ---------------------------------------------------------------- 8. rollback fails
write_tracker_toml bogus
write_compose 2s
C5=$(commit "bad config; the rollback target's image is gone")
push
docker rmi "$OLD_PROM" >/dev/null
deploy d8 "$C5"
check "failed rollback exits 3" [ "$(rc_of d8)" = 3 ]
check "failed rollback reported" has_line d8 "@@tracker-gitops result rollback-failed $C4"
check "failed rollback is loud" grep -q 'ROLLBACK FAILED' "$WORK/d8.err"
check "deployed still C4" [ "$(cat "$REMOTE_ROOT/deployed")" = "$C4" ]

# ---------------------------------------------------------------- 9. broken deployed commit
deploy d9 "$C4"
check "re-deploying the broken deployed commit fails (no rollback to itself)" \
  has_line d9 "@@tracker-gitops result failed $C4"
check "... and exits 1" [ "$(rc_of d9)" = 1 ]

# ---------------------------------------------------------------- audit, secrets
check "audit.log has one line per attempt (10)" [ "$(wc -l <"$REMOTE_ROOT/audit.log")" = 10 ]
check "audit results" diff <(awk '{print $3}' "$REMOTE_ROOT/audit.log") \
  <(printf 'result=%s\n' failed deployed noop rolled-back failed lock-busy deployed deployed rollback-failed failed)
check "token absent from remote files but secrets.env" \
  [ -z "$(grep -rlF -- "$TOKEN" "$REMOTE_ROOT" --exclude=secrets.env 2>/dev/null)" ]
check "token absent from all script output" [ -z "$(cat "$WORK"/*.out "$WORK"/*.err | grep -F -- "$TOKEN")" ]

cat "$REMOTE_ROOT/audit.log"
printf '%s passed, %s failed\n' "$pass" "$fail"
[ "$fail" = 0 ]
