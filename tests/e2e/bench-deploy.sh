#!/usr/bin/env bash
# Deploy benchmark on the loopback VM (run on demand, not part of the tests):
# the flow of tests/it/deploy.rs (images.sh, vm.sh, a bare origin, render →
# publish → deploy) timed over RUNS runs of each scenario:
#   config      only the tracker's announce interval changes
#   prometheus  only Prometheus' scrape interval changes
#   noop        the deployed commit again
#   first       a first deploy of the stack (images present, nothing running)
# During config and prometheus a UDP announce goes to the tracker every 50 ms
# (udp_tracker_client, loopback); printed: the longest time between two
# answers (the outage; an announce waits 0.15 s for its answer) and the
# number of announces that got none.
#
#   flock -o /tmp/tracker-gitops-e2e.lock tests/e2e/bench-deploy.sh [BIN]
#
# BIN: the tracker-gitops binary (default target/debug/tracker-gitops).
# Env: RUNS (default 5). Must run as root; uses the e2e compose project
# tracker-e2e and ports 6969, 7070, 1212, 9090, so never beside the e2e tests.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=$(realpath "${1:-$REPO/target/debug/tracker-gitops}")
RUNS=${RUNS:-5}
CLIENT=${TRACKER_GITOPS_TRACKER_BIN:-/var/cache/tracker-gitops/torrust-tracker-3.0.0/bin}/udp_tracker_client
PROJECT=tracker-e2e
INFOHASH=9c38422213e30bff212b30c360d26f9a02136422

die() { printf 'bench-deploy.sh: %s\n' "$*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root"
[[ -x $BIN && -x $CLIENT ]] || die "need $BIN and $CLIENT"

WORK=$(mktemp -d /tmp/tg-bench.XXXXXX)
chmod 0755 "$WORK"
ORIGIN=$WORK/origin.git
cleanup() {
  docker compose -p "$PROJECT" down -v --timeout 5 >/dev/null 2>&1 || true
  runuser -u tg-deploy -- git config --global --fixed-value --unset-all \
    safe.directory "$ORIGIN" 2>/dev/null || true
  bash "$HERE/vm.sh" stop "$WORK/vm" 2>/dev/null || true
  rm -rf -- "$WORK"
}
trap cleanup EXIT

bash "$HERE/images.sh" >/dev/null
docker compose -p "$PROJECT" down -v --timeout 5 >/dev/null 2>&1 || true
bash "$HERE/vm.sh" start "$WORK/vm" 2>/dev/null
# shellcheck source=/dev/null
source "$WORK/vm/vm.env"
runuser -u tg-deploy -- git config --global --add safe.directory "$ORIGIN"
ROOT=/home/tg-deploy/bench-$$

export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.org
export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.org
export NO_COLOR=1 TRACKER_ADMIN_TOKEN=bench-token-$$
TRACKER_GITOPS_SSH_KEY=$(<"$VM_KEY")
export TRACKER_GITOPS_SSH_KEY
SRC=$WORK/src
mkdir -p "$SRC/environments"
cd "$SRC"
git init -q -b main
git init -q --bare -b main "$ORIGIN"
git remote add origin "$ORIGIN"

# environment ANNOUNCE_INTERVAL SCRAPE_INTERVAL: environments/e2e.json, from
# the e2e test's (tests/e2e/environment.json).
environment() {
  jq --argjson announce "$1" --argjson scrape "$2" --argjson port "$VM_PORT" \
    --arg key "$VM_HOST_KEY" --arg root "$ROOT" --arg origin "$ORIGIN" '
    .tracker.core.announce_policy.interval = $announce
    | .prometheus.scrape_interval = $scrape
    | .deploy += { port: $port, host_key: $key, path: $root, repository: $origin }' \
    "$HERE/environment.json" >environments/e2e.json
}

# publish ANNOUNCE SCRAPE: render, commit, push to main, publish (untimed).
publish() {
  environment "$1" "$2"
  "$BIN" render --env e2e >/dev/null
  git add -A && git commit -qm "announce $1, scrape $2"
  git push -q "$ORIGIN" HEAD:refs/heads/main
  "$BIN" publish --env e2e --remote origin --push >/dev/null 2>&1 || die "publish failed"
}

# deploy: one timed deploy; its seconds in $took, its output in $WORK/last.
deploy() {
  local start=$EPOCHREALTIME
  "$BIN" deploy --env e2e --no-pull --timeout 90 >"$WORK/last" 2>&1 \
    || { cat "$WORK/last" >&2; die "deploy failed"; }
  took=$(echo "$EPOCHREALTIME - $start" | bc)
}

# announcer LOG: an announce every 50 ms until $WORK/stop exists (at most
# 2 minutes); one line per announce: the time it ended, ok or fail.
announcer() {
  local i result
  for ((i = 0; i < 2400; i++)); do
    [[ ! -e $WORK/stop ]] || break
    if timeout 0.15 "$CLIENT" announce 127.0.0.1:6969 "$INFOHASH" >/dev/null 2>&1; then
      result=ok
    else
      result=fail
    fi
    printf '%s %s\n' "$EPOCHREALTIME" "$result"
    sleep 0.05
  done >"$1"
}

# deploy_announcing: deploy while announcing; adds to $gaps and $fails.
deploy_announcing() {
  local log=$WORK/announces pid
  rm -f "$WORK/stop"
  announcer "$log" &
  pid=$!
  sleep 0.5
  deploy
  sleep 0.5
  touch "$WORK/stop"
  wait "$pid"
  gaps+=" $(awk '$2 == "ok" { if (last && $1 - last > max) max = $1 - last; last = $1 }
    END { printf "%.3f", max }' "$log")"
  fails+=" $(grep -c ' fail$' "$log" || true)"
}

# summary NAME VALUES...: median, min, max.
summary() {
  local name=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v name="$name" '
    { v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%-28s median %6.2f  min %6.2f  max %6.2f  (n=%d)\n", name, m, v[1], v[NR], NR }'
}

announce=120
scrape=15
publish "$announce" "$scrape"

times=""
for ((run = 0; run < RUNS; run++)); do
  docker compose -p "$PROJECT" down -v --timeout 5 >/dev/null 2>&1 || true
  rm -rf -- "$ROOT"
  deploy
  times+=" $took"
done
# shellcheck disable=SC2086 # word lists
summary "first deploy (s)" $times
first_steps=$(grep -E '^  [a-z]+ [0-9.]+s$' "$WORK/last" | tr -s ' \n' ' ')

# changes NAME VARIABLE: RUNS deploys, each adding 1 to VARIABLE (announce
# or scrape), while announcing.
changes() {
  local run times="" gaps="" fails=""
  for ((run = 0; run < RUNS; run++)); do
    (($2 += 1))
    publish "$announce" "$scrape"
    deploy_announcing
    times+=" $took"
  done
  # shellcheck disable=SC2086
  {
    summary "$1 (s)" $times
    summary "  UDP announce gap (s)" $gaps
    summary "  failed announces" $fails
  }
  steps=$(grep -E '^  [a-z]+ [0-9.]+s$' "$WORK/last" | tr -s ' \n' ' ')
}
changes "config change" announce
config_steps=$steps
changes "prometheus change" scrape

times=""
for ((run = 0; run < RUNS; run++)); do
  deploy
  grep -q 'already at' "$WORK/last" || die "not a no-op: $(cat "$WORK/last")"
  times+=" $took"
done
# shellcheck disable=SC2086
summary "no-op deploy (s)" $times
printf 'steps of the last first deploy:  %s\n' "$first_steps"
printf 'steps of the last config change: %s\n' "$config_steps"
printf 'steps of the last no-op:         %s\n' \
  "$(grep -E '^  [a-z]+ [0-9.]+s$' "$WORK/last" | tr -s ' \n' ' ')"
