# shellcheck shell=bash
# tracker-gitops remote script: runs ON THE VM as the deploy user, fed over
# ssh stdin to `bash -s -- <op> <args...>`. The caller prepends
#   TG_SECRETS_B64='NAME=<base64 of value>
#   NAME2=<base64>'
# (may be empty or absent). Secret values never reach argv, logs or any file
# but ROOT/secrets.env (mode 0600).
#
# Ops:
#   deploy ROOT REPO_URL BRANCH COMMIT PULL(0|1) TIMEOUT_SECS HEALTH_URL
#   status ROOT BRANCH
#
# deploy prints on stdout only marker lines:
#   @@tracker-gitops step <lock|fetch|checkout|secrets|pull|up|health|rollback>
#   @@tracker-gitops result <deployed|noop|rolled-back|failed|rollback-failed|lock-busy> <sha>
# (everything else, including docker compose output, goes to stderr) and
# exits 0 deployed/noop, 1 failed/rolled-back, 2 invalid input or commit not
# on the deploy branch, 3 rollback failed, 4 another deploy holds the lock.
# status prints a report on stdout and exits 0 in sync, 1 otherwise
# (2 invalid input).
#
# Everything is inside functions and `main` reads /dev/null, so nothing run
# here can swallow the rest of the script from stdin, and a truncated script
# runs nothing. A deploy that has started runs to its end (rollback and
# audit line included) even if the ssh connection drops.

tg_main() {
  set -euo pipefail
  umask 022
  export LC_ALL=C GIT_TERMINAL_PROMPT=0
  export GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes}"
  unset COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES COMPOSE_ENV_FILES \
    COMPOSE_PATH_SEPARATOR COMPOSE_REMOVE_ORPHANS

  local op=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$op" in
    deploy) tg_deploy "$@" ;;
    status) tg_status "$@" ;;
    *)
      tg_say "usage: bash -s -- deploy ROOT REPO_URL BRANCH COMMIT PULL TIMEOUT_SECS HEALTH_URL"
      tg_say "       bash -s -- status ROOT BRANCH"
      return 2
      ;;
  esac
}

# ------------------------------------------------------------------ helpers

# Output errors are ignored: a deploy keeps going if the ssh session is gone.
tg_say() { printf '%s\n' "$*" >&2 || true; }
tg_marker() { printf '@@tracker-gitops %s\n' "$*" || true; }
tg_step() { tg_marker "step $1"; }
tg_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
tg_is_sha() { [[ $1 =~ ^[0-9a-f]{40}([0-9a-f]{24})?$ ]]; }

# Copy stdin to stdout line by line; survives a closed stdout.
tg_relay() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line" 2>/dev/null || true
  done
}

# Compose, always in the checkout, with stdout sent to stderr unless captured
# by the caller (tg_dc_out).
tg_dc() { (cd "$tg_checkout" && docker compose "$@") >&2; }
tg_dc_out() { (cd "$tg_checkout" && docker compose "$@"); }
# gc.autoDetach=false: a detached `git gc` would inherit the lock's fd 9.
tg_git() { git -C "$tg_checkout" -c gc.autoDetach=false "$@"; }
# Compose in the checkout with a time limit (for exec and logs).
tg_dc_timeout() {
  local secs=$1
  shift
  (cd "$tg_checkout" && timeout "$secs" docker compose "$@") >&2 </dev/null
}

tg_read_deployed() {
  local sha=""
  if [[ -f "$tg_root/deployed" ]]; then
    sha=$(<"$tg_root/deployed")
    sha=${sha//[[:space:]]/}
  fi
  if [[ -n $sha ]] && tg_is_sha "$sha"; then printf '%s' "$sha"; fi
}

# Names a secret may not take: they would change how this script, git,
# docker or the dynamic loader behave.
tg_name_reserved() {
  case "$1" in
    PATH | HOME | USER | LOGNAME | SHELL | IFS | PWD | OLDPWD | TMPDIR | ENV | CDPATH | \
      TERM | LANG | LC_* | LD_* | BASH* | SHELLOPTS | PS4 | DOCKER_* | COMPOSE_* | GIT_* | SSH_* | TG_*)
      return 0
      ;;
  esac
  return 1
}

# Validate TG_SECRETS_B64 into tg_secret_lines (NAME=base64). Pure bash: no
# here-string or temp file ever holds the values.
tg_parse_secrets() {
  local rest=${TG_SECRETS_B64-} line name n=0
  local -A seen=()
  tg_secret_lines=()
  while [[ -n $rest ]]; do
    line=${rest%%$'\n'*}
    if [[ $rest == *$'\n'* ]]; then rest=${rest#*$'\n'}; else rest=""; fi
    n=$((n + 1))
    line=${line%$'\r'}
    [[ -n $line ]] || continue
    if [[ ! $line =~ ^[A-Z][A-Z0-9_]*=[A-Za-z0-9+/]*={0,2}$ ]]; then
      tg_say "secrets block: line $n is not NAME=<base64>"
      return 1
    fi
    name=${line%%=*}
    if tg_name_reserved "$name"; then
      tg_say "secrets block: secret name $name is reserved"
      return 1
    fi
    if [[ -n ${seen[$name]+x} ]]; then
      tg_say "secrets block: secret $name given twice"
      return 1
    fi
    seen[$name]=1
    tg_secret_lines+=("$line")
  done
  return 0
}

tg_secrets_text() {
  if ((${#tg_secret_lines[@]})); then printf '%s\n' "${tg_secret_lines[@]}"; fi
}

# Write ROOT/secrets.env atomically, mode 0600.
tg_write_secrets() {
  local tmp="$tg_root/.secrets.env.tmp.$$"
  (
    umask 077
    tg_secrets_text >"$tmp"
  ) || { rm -f -- "$tmp"; return 1; }
  if ! chmod 0600 "$tmp" || ! mv -f -- "$tmp" "$tg_root/secrets.env"; then
    rm -f -- "$tmp"
    return 1
  fi
}

# Decode ROOT/secrets.env into exported variables of this shell (values go
# through a pipe into memory only).
tg_load_secrets() {
  local f="$tg_root/secrets.env" line name b64 value
  [[ -f $f ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -n $line ]] || continue
    if [[ ! $line =~ ^([A-Z][A-Z0-9_]*)=([A-Za-z0-9+/]*={0,2})$ ]]; then
      tg_say "secrets.env: malformed line"
      return 1
    fi
    name=${BASH_REMATCH[1]}
    b64=${BASH_REMATCH[2]}
    if tg_name_reserved "$name"; then
      tg_say "secrets.env: secret name $name is reserved"
      return 1
    fi
    if ! value=$(printf '%s' "$b64" | base64 -d 2>/dev/null && printf x); then
      tg_say "secrets.env: $name is not valid base64"
      return 1
    fi
    export "$name=${value%x}"
  done <"$f"
  return 0
}

# ------------------------------------------------------------- inspection

# Lines "service state health id" for every container of the project
# (health "none" when the container has no healthcheck), and "service
# missing none -" for a service without container.
tg_service_states() {
  local services ps svc s state health id found
  services=$(tg_dc_out config --services) || return 1
  ps=$(tg_dc_out ps -a --format '{{.Service}} {{.State}} {{.ID}} {{.Health}}') || return 1
  while IFS= read -r svc; do
    [[ -n $svc ]] || continue
    found=0
    while read -r s state id health; do
      [[ $s == "$svc" ]] || continue
      found=1
      printf '%s %s %s %s\n' "$svc" "${state:-unknown}" "${health:-none}" "$id"
    done < <(printf '%s\n' "$ps")
    ((found)) || printf '%s missing none -\n' "$svc"
  done < <(printf '%s\n' "$services")
}

# Sets tg_bad_services to the services not running, or unhealthy; returns 0
# when there are none.
tg_check_services() {
  local states svc state health id
  tg_bad_services=()
  states=$(tg_service_states) || return 1
  while read -r svc state health id; do
    [[ -n $svc ]] || continue
    if [[ $state != running || ($health != none && $health != healthy) ]]; then
      tg_say "service $svc is $state (health: $health)"
      [[ " ${tg_bad_services[*]} " == *" $svc "* ]] || tg_bad_services+=("$svc")
    fi
  done < <(printf '%s\n' "$states")
  ((${#tg_bad_services[@]} == 0))
}

# The tracker's own health API, from inside its container.
tg_check_health_url() {
  local i
  for i in 1 2 3; do
    if tg_dc_timeout 30 exec -T tracker /usr/bin/http_health_check "$tg_health_url"; then
      return 0
    fi
    [[ $i -lt 3 ]] && sleep 2
  done
  tg_say "health check $tg_health_url failed"
  return 1
}

# "service hash" for every service's tracker-gitops.config-hash label in the
# desired configuration (docker compose config --format json, indented by
# two spaces per level). The output never leaves this pipe.
tg_desired_hashes() {
  tg_dc_out config --format json | awk '
    /^  "services": \{/ { insvc = 1; next }
    insvc && /^  [^ ]/ { insvc = 0 }
    insvc && /^    "[^"]*": \{/ { svc = $0; sub(/^    "/, "", svc); sub(/".*$/, "", svc); inlab = 0; next }
    insvc && /^      "labels": \{/ { inlab = 1; next }
    inlab && /^      [^ ]/ { inlab = 0 }
    inlab && /^        "tracker-gitops\.config-hash": "/ {
      v = $0; sub(/^[^:]*: "/, "", v); sub(/",?[[:space:]]*$/, "", v); print svc, v
    }'
}

# Prints "drift: container <service>" for every running container whose
# config-hash label differs from the desired one; returns 1 if any.
tg_container_drift() {
  local desired ps svc id actual want drift=0
  desired=$(tg_desired_hashes) || return 1
  ps=$(tg_dc_out ps --format '{{.Service}} {{.ID}}') || return 1
  while read -r svc id; do
    [[ -n $svc ]] || continue
    actual=$(docker inspect -f '{{ index .Config.Labels "tracker-gitops.config-hash" }}' "$id" 2>/dev/null) || actual=""
    [[ $actual == "<no value>" ]] && actual=""
    want=$(awk -v s="$svc" '$1 == s { print $2; exit }' <<<"$desired")
    if [[ $actual != "$want" ]]; then
      printf 'drift: container %s\n' "$svc"
      drift=1
    fi
  done < <(printf '%s\n' "$ps")
  return "$drift"
}

# ------------------------------------------------------------------ deploy

tg_audit() {
  local result=$1
  printf '%s commit=%s result=%s previous=%s by=%s\n' "$(tg_now)" "$tg_commit" \
    "$result" "${tg_previous:-none}" "$tg_user" >>"$tg_root/audit.log" \
    || tg_say "warning: could not append to $tg_root/audit.log"
}

# Emit the one result of this attempt: audit line, marker, exit code.
tg_finish() {
  local result=$1 sha=$2 code=$3
  tg_result_done=1
  tg_audit "$result"
  tg_marker "result $result $sha"
  if [[ -n ${tg_lock_held:-} ]]; then
    : >"$tg_root/deploy.lock" 2>/dev/null || true
  fi
  exit "$code"
}

# shellcheck disable=SC2329 # invoked by the EXIT trap
tg_on_exit() {
  local code=$?
  if [[ -z ${tg_result_done:-} && -n ${tg_audit_ready:-} ]]; then
    tg_say "internal error (exit code $code) before a result was reached"
    tg_result_done=1
    tg_audit failed
    tg_marker "result failed $tg_commit"
    [[ -z ${tg_lock_held:-} ]] || : >"$tg_root/deploy.lock" 2>/dev/null || true
    exit 1
  fi
}

tg_step_lock() {
  tg_step lock
  exec 9>>"$tg_root/deploy.lock"
  if ! flock -w 10 9; then
    local holder
    holder=$(head -n 1 "$tg_root/deploy.lock" 2>/dev/null) || holder=""
    tg_say "deploy in progress by ${holder:-unknown holder}"
    tg_finish lock-busy "$tg_commit" 4
  fi
  tg_lock_held=1
  printf '%s@%s pid=%s commit=%s started=%s\n' "$tg_user" "${HOSTNAME:-$(uname -n)}" \
    "$$" "$tg_commit" "$(tg_now)" >"$tg_root/deploy.lock"
}

tg_step_fetch() {
  tg_step fetch
  if [[ -d "$tg_checkout/.git" ]]; then
    tg_git remote set-url origin "$tg_repo_url" >&2 || return 1
    tg_git fetch --quiet --no-tags origin \
      "+refs/heads/$tg_branch:refs/remotes/origin/$tg_branch" >&2 || return 1
  else
    rm -rf -- "$tg_checkout" "$tg_root/checkout.tmp" || return 1
    git clone --quiet --no-tags --branch "$tg_branch" --single-branch \
      "$tg_repo_url" "$tg_root/checkout.tmp" >&2 || return 1
    mv -- "$tg_root/checkout.tmp" "$tg_checkout" || return 1
  fi
}

# Returns 0 when the running stack already is COMMIT, healthy and unchanged.
tg_is_noop() {
  [[ -n $tg_previous && $tg_previous == "$tg_commit" ]] || return 1
  [[ $tg_head_before == "$tg_commit" && $tg_file_drift == 0 ]] || return 1
  [[ -f "$tg_root/secrets.env" && "$(<"$tg_root/secrets.env")" == "$(tg_secrets_text)" ]] || return 1
  (
    tg_load_secrets || exit 1
    tg_check_services 2>/dev/null || exit 1
    tg_container_drift >/dev/null 2>&1 || exit 1
    tg_check_health_url 2>/dev/null || exit 1
  )
}

tg_rollback() {
  local reason=$1 svc
  tg_step rollback
  tg_say "deploy of $tg_commit failed at step $reason"
  # Compose needs the secrets for interpolation (also if writing the new
  # ones failed: then the previous ones are still in secrets.env).
  tg_load_secrets || tg_say "could not load $tg_root/secrets.env"
  if ! ((${#tg_bad_services[@]})); then
    tg_check_services >/dev/null 2>&1 || true
  fi
  if ((${#tg_bad_services[@]})); then
    for svc in "${tg_bad_services[@]}"; do
      tg_say "---- last 50 log lines of $svc ----"
      tg_dc_timeout 60 logs --no-color --tail 50 "$svc" || true
    done
    tg_say "---- end of logs ----"
  fi
  if [[ -z $tg_previous ]]; then
    tg_say "no previously deployed commit to roll back to; the stack is left as it is"
    tg_finish failed "$tg_commit" 1
  fi
  if [[ $tg_previous == "$tg_commit" ]]; then
    tg_say "$tg_commit is the deployed commit itself: nothing to roll back to; the stack is left as it is"
    tg_finish failed "$tg_commit" 1
  fi
  tg_say "rolling back to $tg_previous"
  tg_bad_services=()
  if tg_git checkout --quiet --detach --force "$tg_previous" >&2 \
    && tg_dc up -d --remove-orphans --wait --wait-timeout "$tg_timeout" \
    && tg_check_services && tg_check_health_url; then
    printf '%s\n' "$tg_previous" >"$tg_root/deployed.tmp" && mv -f "$tg_root/deployed.tmp" "$tg_root/deployed" || true
    tg_say "rolled back to $tg_previous"
    tg_finish rolled-back "$tg_previous" 1
  fi
  tg_say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  tg_say "!!! ROLLBACK FAILED: the stack is neither $tg_commit nor $tg_previous"
  tg_say "!!! and may be down. Log in to the VM and check $tg_checkout."
  tg_say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  for svc in "${tg_bad_services[@]}"; do
    tg_dc_timeout 60 logs --no-color --tail 50 "$svc" || true
  done
  tg_finish rollback-failed "$tg_previous" 3
}

tg_deploy() {
  if [[ $# -ne 7 ]]; then
    tg_say "deploy: expected 7 arguments: ROOT REPO_URL BRANCH COMMIT PULL TIMEOUT_SECS HEALTH_URL, got $#"
    return 2
  fi
  tg_root=${1%/}
  tg_repo_url=$2
  tg_branch=$3
  tg_commit=$4
  tg_pull=$5
  tg_timeout=$6
  tg_health_url=$7
  tg_checkout="$tg_root/checkout"
  tg_user=$(id -un)
  tg_bad_services=()
  tg_secret_lines=()

  local bad=""
  [[ $tg_root == /* && $tg_root != / ]] || bad="ROOT must be an absolute path"
  [[ -n $tg_repo_url ]] || bad="REPO_URL is empty"
  git check-ref-format --branch "$tg_branch" >/dev/null 2>&1 || bad="invalid BRANCH '$tg_branch'"
  tg_is_sha "$tg_commit" || bad="COMMIT must be a full lowercase hex object id"
  [[ $tg_pull == 0 || $tg_pull == 1 ]] || bad="PULL must be 0 or 1"
  [[ $tg_timeout =~ ^[1-9][0-9]{0,4}$ ]] || bad="TIMEOUT_SECS must be a positive integer"
  [[ $tg_health_url =~ ^https?://[^[:space:]]+$ ]] || bad="HEALTH_URL must be an http(s) URL"
  if [[ -n $bad ]]; then
    tg_say "deploy: $bad"
    return 2
  fi
  tg_parse_secrets || return 2
  if ! docker compose version >/dev/null 2>&1; then
    tg_say "deploy: 'docker compose' (Compose v2) is not available for $tg_user"
    return 2
  fi

  # Once started, finish (including rollback and audit) even if the ssh
  # connection drops: ignore SIGHUP and SIGPIPE, and let children write into
  # relays that keep draining when the session's stdout/stderr are gone
  # (docker compose dies on EPIPE even with SIGPIPE ignored).
  trap '' HUP PIPE
  exec 1> >(tg_relay) 2> >(tg_relay >&2)
  mkdir -p -- "$tg_root"
  tg_previous=$(tg_read_deployed)
  tg_audit_ready=1
  trap tg_on_exit EXIT

  tg_step_lock
  tg_previous=$(tg_read_deployed) # may have changed while we waited

  if ! tg_step_fetch; then
    tg_say "could not fetch branch $tg_branch from $tg_repo_url"
    tg_finish failed "$tg_commit" 1
  fi

  tg_step checkout
  if ! tg_git cat-file -e "$tg_commit^{commit}" 2>/dev/null \
    || ! tg_git merge-base --is-ancestor "$tg_commit" "refs/remotes/origin/$tg_branch" 2>/dev/null; then
    tg_say "commit $tg_commit is not on the deploy branch $tg_branch (tip: $(tg_git rev-parse --verify -q "refs/remotes/origin/$tg_branch" || echo unknown))"
    tg_finish failed "$tg_commit" 2
  fi
  tg_head_before=$(tg_git rev-parse --verify -q HEAD) || tg_head_before=""
  tg_file_drift=0
  if [[ -n "$(tg_git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    tg_file_drift=1
    tg_say "tracked files were modified in $tg_checkout; restoring them and recreating the containers:"
    tg_git status --porcelain --untracked-files=no >&2 || true
  fi
  if ! tg_git checkout --quiet --detach --force "$tg_commit" >&2; then
    tg_rollback checkout
  fi
  if tg_is_noop; then
    tg_say "$tg_commit is already deployed and healthy"
    tg_finish noop "$tg_commit" 0
  fi

  tg_step secrets
  if ! tg_write_secrets || ! tg_load_secrets; then
    tg_rollback secrets
  fi

  tg_step pull
  if [[ $tg_pull == 1 ]]; then
    if ! tg_dc pull --quiet --ignore-buildable; then
      tg_rollback pull
    fi
  else
    tg_say "pull skipped (PULL=0)"
  fi

  tg_step up
  local -a up_args=(up -d --remove-orphans --wait --wait-timeout "$tg_timeout")
  ((tg_file_drift)) && up_args+=(--force-recreate)
  if ! tg_dc "${up_args[@]}"; then
    tg_rollback up
  fi

  tg_step health
  if ! tg_check_services || ! tg_check_health_url; then
    tg_rollback health
  fi

  printf '%s\n' "$tg_commit" >"$tg_root/deployed.tmp" && mv -f "$tg_root/deployed.tmp" "$tg_root/deployed"
  tg_finish deployed "$tg_commit" 0
}

# ------------------------------------------------------------------ status

tg_status() {
  if [[ $# -ne 2 ]]; then
    tg_say "status: expected 2 arguments: ROOT BRANCH, got $#"
    return 2
  fi
  tg_root=${1%/}
  tg_branch=$2
  tg_checkout="$tg_root/checkout"
  if [[ $tg_root != /* || $tg_root == / ]] || ! git check-ref-format --branch "$tg_branch" >/dev/null 2>&1; then
    tg_say "status: invalid ROOT or BRANCH"
    return 2
  fi

  local deployed tip="" head="" sync=1 states line svc state health id files f
  deployed=$(tg_read_deployed)
  printf 'deployed: %s\n' "${deployed:-none}"
  [[ -n $deployed ]] || sync=0

  if [[ -d "$tg_checkout/.git" ]]; then
    tip=$(timeout 60 git -C "$tg_checkout" ls-remote --heads origin "refs/heads/$tg_branch" 2>/dev/null \
      | awk 'NR == 1 { print $1 }') || tip=""
    head=$(tg_git rev-parse --verify -q HEAD 2>/dev/null) || head=""
  fi
  printf 'branch: %s\n' "${tip:-unknown}"
  [[ -n $tip && $tip == "$deployed" ]] || sync=0
  [[ -n $head && $head == "$deployed" ]] || sync=0

  if [[ -d "$tg_checkout/.git" ]] && tg_load_secrets; then
    if states=$(tg_service_states 2>/dev/null); then
      while read -r svc state health id; do
        [[ -n $svc ]] || continue
        printf 'service %s %s %s\n' "$svc" "$state" "$health"
        [[ $state == running && ($health == none || $health == healthy) ]] || sync=0
      done < <(printf '%s\n' "$states")
    else
      tg_say "status: docker compose could not read the project in $tg_checkout"
      sync=0
    fi
    files=$(tg_git status --porcelain --untracked-files=no 2>/dev/null) || files=""
    while IFS= read -r line; do
      [[ -n $line ]] || continue
      f=${line:3}
      printf 'drift: file %s\n' "$f"
      sync=0
    done < <(printf '%s\n' "$files")
    tg_container_drift 2>/dev/null || sync=0
  else
    sync=0
  fi

  if ((sync)); then
    printf 'in-sync\n'
    return 0
  fi
  printf 'out-of-sync\n'
  return 1
}

tg_main "$@" </dev/null; exit $?
