# shellcheck shell=bash
# tracker-gitops remote script: runs ON THE VM as the deploy user, fed over
# ssh stdin to `bash -s -- OP` after a prelude the CLI writes
# (src/deploy/protocol.rs), which defines
#   tg_results, tg_verdicts    result and verdict words -> exit codes
#   tg_reserved_names/_prefixes  secret names that are refused
#   tg_req_*                   the request (fields checked in tg_bad_request)
# Ops:
#   deploy    prints on stdout only marker lines
#               @@tracker-gitops step <word>
#               @@tracker-gitops result <word> <sha>
#             (everything else, docker compose's output included, goes to
#             stderr) and exits with the result's code.
#   status    prints a report and exits with its verdict's code.
#   deployed  prints `@@tracker-gitops deployed <sha|none>`, the running
#             commit, then `@@tracker-gitops previous <sha|none>`: the commit
#             a rollback goes back to. Changes nothing.
#   backup    one backup now, by the stack's backup service; restore
#   backups   lists them; restore puts one back, stopping only the tracker.
#             They print step markers (the service's own too), its
#             `@@tracker-gitops backup|restored …` lines, and
#             `@@tracker-gitops done <word>`, and exit with its code
#             (tg_data_results). backup and restore take the deploy lock and
#             write an audit line.
# ROOT holds checkout/ (the commit and, of what is not in it, only the data
# directories tg_req_keep names), secrets/<sha>.env (mode 0600: the secrets
# each recently deployed commit runs with), deployed (the running commit),
# history (deployed commits, oldest first), deploy.lock and audit.log.
# Secret values never reach argv, logs, the environment of this shell, or any
# file but secrets/<sha>.env.
#
# Everything is inside functions and `main` reads /dev/null, so nothing run
# here can swallow the rest of the script from stdin, and a truncated script
# runs nothing. A deploy that has started runs to its result even if the ssh
# connection drops; TERM, HUP or INT stop it and roll it back.

# The names the prelude assigns, declared again here (which keeps their
# values) so that the script reads as a whole.
declare -A tg_results tg_verdicts tg_data_results tg_reserved_names
declare -a tg_reserved_prefixes
declare tg_req_root tg_req_repository tg_req_branch tg_req_commit tg_req_pull \
  tg_req_timeout tg_req_health_url tg_req_allow_downgrade tg_req_stored_secrets \
  tg_req_secrets tg_req_keep tg_req_actor tg_req_run tg_req_lock_wait tg_req_expect \
  tg_req_backup_script tg_req_backup

tg_main() {
  set -euo pipefail
  umask 022
  export LC_ALL=C GIT_TERMINAL_PROMPT=0
  export GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes}"
  unset COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES COMPOSE_ENV_FILES \
    COMPOSE_PATH_SEPARATOR COMPOSE_REMOVE_ORPHANS
  if [[ -z ${tg_results[refused]+x} ]]; then
    tg_say "no protocol prelude: this script is run by tracker-gitops deploy/status/rollback"
    return 2
  fi
  case ${1:-} in
    deploy) tg_deploy ;;
    status) tg_status ;;
    deployed) tg_deployed_op ;;
    backup | backups | restore) tg_data_op "$1" ;;
    *)
      tg_say "usage: bash -s -- deploy|status|deployed|backup|backups|restore"
      return "${tg_results[refused]}"
      ;;
  esac
}

# ------------------------------------------------------------------ helpers

# Output errors are ignored: a deploy keeps going if the ssh session is gone.
tg_say() { printf '%s\n' "$*" >&2 || true; }
tg_marker() { printf '@@tracker-gitops %s\n' "$*" || true; }
tg_step() {
  tg_on_signal_received
  tg_marker "step $1"
}
tg_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# Sets tg_encoded to TEXT percent-encoded for a URL's user information
# (RFC 3986 unreserved characters kept), byte by byte (LC_ALL=C), with
# builtins only: the value never reaches argv.
tg_urlencode() {
  local text=$1 i c
  tg_encoded=""
  for ((i = 0; i < ${#text}; i++)); do
    c=${text:i:1}
    case $c in
      [A-Za-z0-9._~-]) tg_encoded+=$c ;;
      *)
        printf -v c '%%%02X' "'$c"
        tg_encoded+=$c
        ;;
    esac
  done
}
tg_is_sha() { [[ $1 =~ ^[0-9a-f]{40}([0-9a-f]{24})?$ ]]; }

# Copy stdin to stdout line by line; survives a closed stdout.
tg_relay() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line" 2>/dev/null || true
  done
}

# Runs a command in the background and waits for it, so that a signal is acted
# on at once: the command is stopped (unless rolling back, which runs to its
# end) and reports failure. No command gets the lock's fd 9: an orphaned
# docker compose cannot keep the lock.
tg_run() {
  local pid rc
  "$@" 9>&- &
  pid=$!
  while :; do
    rc=0
    wait "$pid" || rc=$?
    # A trapped signal ends the wait early while the command runs on.
    if ((rc <= 128)) || ! kill -0 "$pid" 2>/dev/null; then break; fi
    [[ -n ${tg_rolling_back:-} ]] || kill -TERM "$pid" 2>/dev/null || true
  done
  [[ -z ${tg_signal:-} || -n ${tg_rolling_back:-} ]] || return 1
  return "$rc"
}

# docker compose in the checkout (LIMIT seconds, or - for none), in the
# subshell that `&` or `$(…)` made: only there are the secrets exported, so no
# secret name can change how this script runs.
tg_compose() {
  local limit=$1 i
  local -a encoded=()
  shift
  cd "$tg_checkout" || exit 1
  # Encoded first: once exported, a secret named like a shell variable
  # (FUNCNEST…) could change how a function runs.
  for i in "${!tg_env_names[@]}"; do
    tg_urlencode "${tg_env_values[i]}"
    encoded[i]=$tg_encoded
  done
  for i in "${!tg_env_names[@]}"; do
    export "${tg_env_names[i]}=${tg_env_values[i]}" \
      "TG_URLENCODED_${tg_env_names[i]}=${encoded[i]}"
  done
  if [[ $limit == - ]]; then exec docker compose "$@"; fi
  exec timeout "$limit" docker compose "$@"
}
# Output to stderr, interruptible; or captured (short queries only).
# shellcheck disable=SC2329 # run by tg_deploy_step
tg_dc() { tg_run tg_compose - "$@" >&2; }
tg_dc_out() { (tg_compose - "$@") 9>&-; }
tg_up_stack() { tg_run tg_compose "$tg_timeout" "${tg_up[@]}" >&2; }
# gc.autoDetach=false: a detached `git gc` would outlive the deploy.
tg_git() { git -C "$tg_checkout" -c gc.autoDetach=false "$@" 9>&-; }

tg_read_deployed() {
  local sha=""
  if [[ -f "$tg_root/deployed" ]]; then
    sha=$(<"$tg_root/deployed")
    sha=${sha//[[:space:]]/}
  fi
  if [[ -n $sha ]] && tg_is_sha "$sha"; then printf '%s' "$sha"; fi
}

# Writes FILE atomically with TEXT and a newline; fails loudly.
tg_write() {
  if printf '%s\n' "$2" >"$1.tmp" && mv -f -- "$1.tmp" "$1"; then return 0; fi
  rm -f -- "$1.tmp"
  tg_say "could not write $1"
  return 1
}

# The first problem with the request fields named, or nothing.
tg_bad_request() {
  local field name dir=""
  for field in "$@"; do
    name=tg_req_$field
    if [[ -z ${!name+x} ]]; then
      printf '%s is missing' "$field"
      return
    fi
    case $field in
      root) [[ ${tg_req_root%/} == /?* && $tg_req_root != *[[:cntrl:]]* ]] ;;
      repository) [[ $tg_req_repository == [!-]* && $tg_req_repository != *[[:cntrl:]]* ]] ;;
      branch) git check-ref-format --branch "$tg_req_branch" >/dev/null 2>&1 ;;
      commit) tg_is_sha "$tg_req_commit" ;;
      expect) [[ $tg_req_expect == - || $tg_req_expect == none ]] || tg_is_sha "$tg_req_expect" ;;
      pull | allow_downgrade | stored_secrets) [[ ${!name} == [01] ]] ;;
      timeout) [[ $tg_req_timeout =~ ^[1-9][0-9]{0,4}$ ]] ;;
      lock_wait) [[ $tg_req_lock_wait =~ ^[0-9]{1,4}$ ]] ;;
      health_url) [[ $tg_req_health_url =~ ^https?://[[:graph:]]+$ ]] ;;
      actor | run) [[ ${!name} =~ ^[!-~]{1,200}$ ]] ;;
      backup_script) [[ $tg_req_backup_script =~ ^/[A-Za-z0-9._/-]+$ ]] ;;
      backup) [[ $tg_req_backup =~ ^[0-9]{8}T[0-9]{6}Z$ ]] ;;
      keep)
        # Relative paths without `.` or `..` components.
        read -r -a tg_keep <<<"$tg_req_keep"
        for dir in "${tg_keep[@]}"; do
          [[ $dir =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$ ]] || break
          dir=""
        done
        [[ -z ${dir-} ]]
        ;;
      secrets) true ;; # checked by tg_secrets_parse
    esac || {
      printf '%s is not valid' "$field"
      return
    }
  done
}

# Whether a secret may not take this name (the list comes with the prelude).
tg_name_reserved() {
  local prefix
  [[ -n ${tg_reserved_names[$1]+x} ]] && return 0
  for prefix in "${tg_reserved_prefixes[@]}"; do
    [[ $1 == "$prefix"* ]] && return 0
  done
  return 1
}

# Validates TEXT (NAME=<base64> lines; WHAT names it in errors) into
# tg_env_names and tg_env_values, decoded in memory (no here-string or temp
# file holds them), and tg_env_text, the lines as stored. Changes nothing when
# TEXT is invalid.
tg_secrets_parse() {
  local rest=$1 what=$2 line name b64 value n=0 text=""
  local -a names=() values=()
  local -A seen=()
  while [[ -n $rest ]]; do
    line=${rest%%$'\n'*}
    if [[ $rest == *$'\n'* ]]; then rest=${rest#*$'\n'}; else rest=""; fi
    n=$((n + 1))
    [[ -n $line ]] || continue
    if [[ ! $line =~ ^([A-Z][A-Z0-9_]*)=([A-Za-z0-9+/]*={0,2})$ ]]; then
      tg_say "$what: line $n is not NAME=<base64>"
      return 1
    fi
    name=${BASH_REMATCH[1]}
    b64=${BASH_REMATCH[2]}
    if tg_name_reserved "$name"; then
      tg_say "$what: secret name $name is reserved"
      return 1
    fi
    if [[ -n ${seen[$name]+x} ]]; then
      tg_say "$what: secret $name given twice"
      return 1
    fi
    seen[$name]=1
    if ! value=$(printf '%s' "$b64" | base64 -d 2>/dev/null && printf x); then
      tg_say "$what: $name is not valid base64"
      return 1
    fi
    names+=("$name")
    values+=("${value%x}")
    text+="$line"$'\n'
  done
  tg_env_names=("${names[@]}")
  tg_env_values=("${values[@]}")
  tg_env_text=$text
}

tg_secrets_file() { printf '%s/secrets/%s.env' "$tg_root" "$1"; }

# Loads the secrets COMMIT was deployed with.
tg_secrets_load() {
  local file
  file=$(tg_secrets_file "$1")
  [[ -f $file ]] || return 1
  tg_secrets_parse "$(<"$file")" "$file"
}

# Stores the loaded secrets as COMMIT's (mode 0600, atomically).
tg_secrets_store() {
  local file tmp
  file=$(tg_secrets_file "$1")
  tmp="$file.tmp"
  (
    umask 077
    mkdir -p -- "$tg_root/secrets" && printf '%s' "$tg_env_text" >"$tmp"
  ) && chmod 0600 "$tmp" && mv -f -- "$tmp" "$file" && return 0
  rm -f -- "$tmp"
  tg_say "could not write $file"
  return 1
}

# ------------------------------------------------------------- inspection

# `git clean` arguments: every untracked file but the data directories.
tg_clean_args() {
  local dir
  read -r -a tg_keep <<<"$tg_req_keep"
  tg_clean=(clean -d -x -ff)
  for dir in "${tg_keep[@]}"; do tg_clean+=(-e "/$dir/"); done
}

# The files in the checkout that are not in the commit (outside the data
# directories), one per line, quoted by git when unusual.
tg_untracked() {
  local line out
  out=$(tg_git "${tg_clean[@]}" -n) || return 1
  while IFS= read -r line; do
    [[ -z $line ]] || printf '%s\n' "${line#Would remove }"
  done < <(printf '%s\n' "$out")
}

# Tracked files changed in the checkout, one per line.
tg_modified() {
  local line out
  out=$(tg_git status --porcelain --untracked-files=no) || return 1
  while IFS= read -r line; do
    [[ -z $line ]] || printf '%s\n' "${line:3}"
  done < <(printf '%s\n' "$out")
}

# Runs the healthcheck command of container ID now, as Docker would at its
# next tick (every 5 s, and Docker Engine before 25 has no start_interval):
# a container just started is known healthy as soon as it is.
tg_probe() {
  local -a test
  mapfile -t test < <(docker inspect -f \
    '{{range .Config.Healthcheck.Test}}{{println .}}{{end}}' "$1" 2>/dev/null 9>&-)
  # println's last newline and docker's own make one empty line too many.
  if ((${#test[@]})) && [[ -z ${test[-1]} ]]; then unset 'test[-1]'; fi
  case ${test[0]-} in
    CMD) test=("${test[@]:1}") ;;
    CMD-SHELL) test=(/bin/sh -c "${test[1]-}") ;;
    *) return 1 ;;
  esac
  tg_run timeout 30 docker exec "$1" "${test[@]}" >/dev/null 2>&1
}

# One line "service state health current|drift id" per service of the checkout's
# configuration and per orphaned container: state "missing" without a
# container, health "none" without a healthcheck, "drift" when the container's
# compose config hash differs from the configuration's (so `up` would
# recreate it), id "-" without a container. A container whose healthcheck
# has not run yet is probed (tg_probe): "healthy" when its healthcheck passes
# now, "starting" if not. The two compose queries run side by side.
tg_service_states() {
  local desired ps svc state hash health id hashes
  local -A want=() seen=()
  exec {hashes}< <(tg_dc_out config --hash '*' || echo "@@failed")
  ps=$(tg_dc_out ps -a --format \
    '{{.Service}} {{.State}} {{.Label "com.docker.compose.config-hash"}} {{.Health}} {{.ID}}') || ps=@@failed
  desired=$(cat <&"$hashes")
  exec {hashes}<&-
  [[ $ps$desired != *@@failed* ]] || return 1
  while read -r svc hash; do
    [[ -z $svc ]] || want[$svc]=$hash
  done < <(printf '%s\n' "$desired")
  while read -r svc state hash health id; do
    [[ -n $svc ]] || continue
    seen[$svc]=1
    if [[ -n ${want[$svc]+x} && ${want[$svc]} == "$hash" ]]; then hash=current; else hash=drift; fi
    if [[ $state == running && $health == starting ]] && tg_probe "$id"; then health=healthy; fi
    printf '%s %s %s %s %s\n' "$svc" "${state:-unknown}" "${health:-none}" "$hash" "${id:--}"
  done < <(printf '%s\n' "$ps")
  for svc in "${!want[@]}"; do
    [[ -n ${seen[$svc]+x} ]] || printf '%s missing none drift -\n' "$svc"
  done
}

# Sets tg_bad_services to the services not running or unhealthy,
# tg_starting to those whose healthcheck does not pass yet, tg_stale to 1
# when a container differs from the configuration and tg_tracker to the
# tracker's container; returns 0 when all are running and healthy.
tg_check_services() {
  local states svc state health current id
  tg_bad_services=()
  tg_starting=()
  tg_stale=0
  tg_tracker=-
  states=$(tg_service_states) || return 1
  while read -r svc state health current id; do
    [[ -n $svc ]] || continue
    [[ $current == current ]] || tg_stale=1
    [[ $svc != tracker ]] || tg_tracker=$id
    if [[ $state == running && $health == starting ]]; then
      tg_starting+=("$svc")
    elif [[ $state != running || ($health != none && $health != healthy) ]]; then
      tg_say "service $svc is $state (health: $health)"
      tg_bad_services+=("$svc")
    fi
  done < <(printf '%s\n' "$states")
  ((${#tg_bad_services[@]} + ${#tg_starting[@]} == 0))
}

# The tracker's own health API, from inside its container (found by
# tg_check_services).
tg_check_health_url() {
  [[ $tg_tracker != - ]] \
    && tg_run timeout 30 docker exec "$tg_tracker" /usr/bin/http_health_check "$tg_health_url"
}

# ------------------------------------------------------------------ deploy

tg_audit() {
  printf '%s commit=%s result=%s previous=%s by=%s run=%s source=%s user=%s%s\n' \
    "$(tg_now)" "$tg_commit" "$1" "${tg_previous:-none}" "$tg_actor" "$tg_run_url" \
    "${tg_source:-unknown}" "$tg_user" "${tg_note:+ $tg_note}" >>"$tg_root/audit.log" \
    || tg_say "warning: could not append to $tg_root/audit.log"
}

# Emit the one result of this attempt: audit line, marker, exit code.
tg_finish() {
  local result=$1 sha=$2
  tg_result_done=1
  tg_audit "$result"
  tg_marker "result $result $sha"
  if [[ -n ${tg_lock_held:-} ]]; then
    : >"$tg_root/deploy.lock" 2>/dev/null || true
  fi
  exit "${tg_results[$result]}"
}

# shellcheck disable=SC2329 # invoked by the EXIT trap
tg_on_exit() {
  local code=$?
  if [[ -z ${tg_result_done:-} ]]; then
    tg_say "internal error (exit code $code) before a result was reached"
    tg_finish failed "$tg_commit"
  fi
}

# Acts on TERM, HUP or INT received since the last call (the traps only
# note them): before the checkout changed anything the deploy just stops,
# after it the deploy is rolled back.
tg_on_signal_received() {
  [[ -n ${tg_signal:-} && -z ${tg_rolling_back:-} ]] || return 0
  if [[ -n ${tg_changed:-} ]]; then tg_rollback "${tg_current_step:-checkout}"; fi
  tg_say "deploy of $tg_commit stopped by SIG$tg_signal; nothing was changed"
  tg_note="signal=$tg_signal"
  tg_finish failed "$tg_commit"
}

tg_step_lock() {
  tg_step lock
  exec 9>>"$tg_root/deploy.lock"
  if ! flock -w "$tg_req_lock_wait" 9; then
    local holder
    holder=$(head -n 1 "$tg_root/deploy.lock" 2>/dev/null) || holder=""
    tg_say "deploy in progress by ${holder:-unknown holder}"
    tg_finish lock-busy "$tg_commit"
  fi
  tg_lock_held=1
  printf '%s (%s@%s pid=%s) commit=%s started=%s\n' "$tg_actor" "$tg_user" \
    "${HOSTNAME:-$(uname -n)}" "$$" "$tg_commit" "$(tg_now)" >"$tg_root/deploy.lock"
}

tg_step_fetch() {
  tg_step fetch
  if [[ -d "$tg_checkout/.git" ]]; then
    tg_git remote set-url origin "$tg_repo_url" >&2 || return 1
    tg_run tg_git fetch --quiet --no-tags origin \
      "+refs/heads/$tg_branch:refs/remotes/origin/$tg_branch" >&2 || return 1
  else
    rm -rf -- "$tg_checkout" "$tg_root/checkout.tmp" || return 1
    tg_run git clone --quiet --no-tags --branch "$tg_branch" --single-branch -- \
      "$tg_repo_url" "$tg_root/checkout.tmp" >&2 || return 1
    mv -- "$tg_root/checkout.tmp" "$tg_checkout" || return 1
  fi
}

# Refuses (exit "refused", nothing changed) a commit that is not on the deploy
# branch, an older commit than the deployed one without allow_downgrade, and
# a rollback to a commit whose secrets are not stored.
tg_check_commit() {
  local tip
  if ! tg_git cat-file -e "$tg_commit^{commit}" 2>/dev/null \
    || ! tg_git merge-base --is-ancestor "$tg_commit" "refs/remotes/origin/$tg_branch" 2>/dev/null; then
    tip=$(tg_git rev-parse --verify -q "refs/remotes/origin/$tg_branch") || tip=unknown
    tg_say "commit $tg_commit is not on the deploy branch $tg_branch (tip: $tip)"
    tg_note="reason=not-on-branch"
    tg_finish refused "$tg_commit"
  fi
  tg_source=$(tg_git log -1 --format='%(trailers:key=Source-Commit,valueonly,separator=%x2C)' \
    "$tg_commit" 2>/dev/null) || tg_source=""
  tg_is_sha "$tg_source" || tg_source=unknown
  if [[ -n $tg_previous && $tg_previous != "$tg_commit" && $tg_req_allow_downgrade == 0 ]] \
    && tg_git merge-base --is-ancestor "$tg_commit" "$tg_previous" 2>/dev/null; then
    tg_say "commit $tg_commit is older than the deployed $tg_previous: a downgrade is" \
      "refused unless asked for (tracker-gitops rollback, or deploy --allow-downgrade)"
    tg_note="reason=downgrade"
    tg_finish refused "$tg_commit"
  fi
  if ((tg_req_stored_secrets)) && ! tg_secrets_load "$tg_commit"; then
    tg_say "no secrets are stored on the VM for $tg_commit: deploy it with the" \
      "secrets from CI (deploy --commit $tg_commit --allow-downgrade)"
    tg_note="reason=no-stored-secrets"
    tg_finish refused "$tg_commit"
  fi
}

# Checks out COMMIT exactly: changed tracked files restored, untracked files
# (but the data directories) removed.
tg_checkout_exactly() {
  tg_git checkout --quiet --detach --force "$1" >&2 && tg_git "${tg_clean[@]}" --quiet >&2
}

# Returns 0 when the running stack already is COMMIT with these secrets,
# unchanged and healthy.
tg_is_noop() {
  [[ -n $tg_previous && $tg_previous == "$tg_commit" ]] || return 1
  [[ $tg_head_before == "$tg_commit" && $tg_file_drift == 0 ]] || return 1
  local file
  file=$(tg_secrets_file "$tg_commit")
  [[ -f $file && "$(<"$file")" == "${tg_env_text%$'\n'}" ]] || return 1
  tg_check_services 2>/dev/null && ((tg_stale == 0)) && tg_check_health_url >/dev/null 2>&1
}

# Records the commit as deployed, with the secrets it runs with; every write
# is checked. The history and the pruning of old secrets are best effort.
tg_record() {
  tg_secrets_store "$tg_commit" && tg_write "$tg_root/deployed" "$tg_commit" || return 1
  local sha file
  local -A keep=(["$tg_commit"]=1)
  { printf '%s\n' "$tg_commit" >>"$tg_root/history" \
    && tail -n 50 "$tg_root/history" >"$tg_root/history.tmp" \
    && mv -f -- "$tg_root/history.tmp" "$tg_root/history"; } \
    || tg_say "warning: could not update $tg_root/history"
  # Keep the secrets of the last few deployed commits: rollbacks need them.
  while read -r sha && ((${#keep[@]} < 5)); do
    tg_is_sha "$sha" && keep[$sha]=1
  done < <(tac "$tg_root/history" 2>/dev/null)
  for file in "$tg_root"/secrets/*.env; do
    sha=${file##*/}
    [[ ! -f $file || -n ${keep[${sha%.env}]+x} ]] || rm -f -- "$file"
  done
}

tg_rollback() {
  local reason=$1 svc
  tg_rolling_back=1
  tg_note="step=$reason${tg_signal:+ signal=$tg_signal}"
  tg_step rollback
  if [[ -n ${tg_signal:-} ]]; then
    tg_say "deploy of $tg_commit stopped by SIG$tg_signal at step $reason"
  else
    tg_say "deploy of $tg_commit failed at step $reason"
  fi
  if ! ((${#tg_bad_services[@]})); then
    tg_check_services >/dev/null 2>&1 || true
  fi
  if ((${#tg_bad_services[@]})); then
    for svc in "${tg_bad_services[@]}"; do
      tg_say "---- last 50 log lines of $svc ----"
      tg_run tg_compose 60 logs --no-color --tail 50 "$svc" >&2 || true
    done
    tg_say "---- end of logs ----"
  fi
  if [[ -z $tg_previous ]]; then
    tg_say "no previously deployed commit to roll back to; the stack is left as it is"
    tg_finish failed "$tg_commit"
  fi
  if [[ $tg_previous == "$tg_commit" ]]; then
    tg_say "$tg_commit is the deployed commit itself: nothing to roll back to; the stack is left as it is"
    tg_finish failed "$tg_commit"
  fi
  # The previous commit runs with the secrets it was deployed with.
  if ! tg_secrets_load "$tg_previous"; then
    tg_say "warning: no secrets stored for $tg_previous; rolling back with those of $tg_commit"
  fi
  tg_say "rolling back to $tg_previous"
  tg_bad_services=()
  if tg_checkout_exactly "$tg_previous" && tg_up_stack && tg_healthy; then
    tg_say "rolled back to $tg_previous"
    tg_finish rolled-back "$tg_previous"
  fi
  tg_say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  tg_say "!!! ROLLBACK FAILED: the stack is neither $tg_commit nor $tg_previous"
  tg_say "!!! and may be down. Log in to the VM and check $tg_checkout."
  tg_say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  for svc in "${tg_bad_services[@]}"; do
    tg_run tg_compose 60 logs --no-color --tail 50 "$svc" >&2 || true
  done
  tg_finish rollback-failed "$tg_previous"
}

# The health gate: every service running and healthy, and the tracker's
# health API answering. Polled (no waiting for Docker's next healthcheck
# tick, see tg_probe) until the deploy's timeout; a service that stopped,
# restarts or is unhealthy fails it at once.
tg_healthy() {
  local deadline=$((SECONDS + tg_timeout))
  while :; do
    # First a moment for the containers just started: the queries below
    # would take the CPU they start with.
    sleep 0.2
    if tg_check_services 2>/dev/null; then
      tg_check_health_url >/dev/null 2>&1 && return 0
    elif ((${#tg_bad_services[@]})); then
      tg_check_services || true # says which and why
      return 1
    fi
    [[ -z ${tg_signal:-} || -n ${tg_rolling_back:-} ]] || return 1
    if ((SECONDS >= deadline)); then
      if tg_check_services && tg_check_health_url >&2; then return 0; fi
      tg_bad_services+=("${tg_starting[@]}")
      tg_say "not healthy after ${tg_timeout}s (starting: ${tg_starting[*]:-none};" \
        "health check $tg_health_url)"
      return 1
    fi
  done
}

# Runs STEP: on failure (or a signal) rolls back.
tg_deploy_step() {
  tg_step "$1"
  tg_current_step=$1
  shift
  "$@" || tg_rollback "$tg_current_step"
  tg_on_signal_received
}

tg_deploy() {
  local problem sha=none
  problem=$(tg_bad_request root repository branch commit pull timeout health_url \
    allow_downgrade stored_secrets secrets keep actor run lock_wait expect)
  if [[ -n $problem ]]; then
    tg_say "deploy: the request's $problem"
    tg_is_sha "${tg_req_commit-}" && sha=$tg_req_commit
    tg_marker "result refused $sha"
    return "${tg_results[refused]}"
  fi
  tg_root=${tg_req_root%/}
  tg_repo_url=$tg_req_repository
  tg_branch=$tg_req_branch
  tg_commit=$tg_req_commit
  tg_timeout=$tg_req_timeout
  tg_health_url=$tg_req_health_url
  tg_actor=$tg_req_actor
  tg_run_url=$tg_req_run
  tg_checkout="$tg_root/checkout"
  tg_user=$(id -un)
  tg_bad_services=()
  tg_env_names=()
  tg_env_values=()
  tg_env_text=""
  tg_clean_args
  # No --wait: it waits for Docker's healthcheck ticks; tg_healthy does not.
  tg_up=(up -d --remove-orphans)

  # From here on every attempt ends with a result and an audit line.
  mkdir -p -- "$tg_root"
  tg_previous=$(tg_read_deployed)
  trap tg_on_exit EXIT
  if ((!tg_req_stored_secrets)) && ! tg_secrets_parse "$tg_req_secrets" "secrets block"; then
    tg_note="reason=bad-secrets"
    tg_finish refused "$tg_commit"
  fi
  if ! docker compose version >/dev/null 2>&1; then
    tg_say "deploy: 'docker compose' (Compose v2) is not available for $tg_user"
    tg_finish refused "$tg_commit"
  fi

  # The traps only note a signal; tg_run and tg_step act on it. Output goes
  # through relays that keep draining (and survive the session's signals)
  # when the ssh connection is gone: docker compose dies on EPIPE even with
  # SIGPIPE ignored.
  trap 'tg_signal=TERM' TERM
  trap 'tg_signal=HUP' HUP
  trap 'tg_signal=INT' INT
  trap '' PIPE
  exec 1> >(
    trap '' TERM HUP INT
    tg_relay
  ) 2> >(
    trap '' TERM HUP INT
    tg_relay >&2
  )

  tg_step_lock
  tg_previous=$(tg_read_deployed) # may have changed while we waited
  # The CLI checked what this commit does to the data against the commit it
  # saw running: another one running now was never checked (unless it is this
  # commit: deploying it again changes no data).
  if [[ $tg_req_expect != - && $tg_req_expect != "${tg_previous:-none}" \
    && $tg_previous != "$tg_commit" ]]; then
    tg_say "the VM runs ${tg_previous:-nothing} now, not $tg_req_expect, which this deploy" \
      "was checked against (another deploy ran meanwhile); nothing was changed: deploy again"
    tg_note="reason=deployed-changed"
    tg_finish refused "$tg_commit"
  fi

  if ! tg_step_fetch; then
    tg_on_signal_received
    tg_say "could not fetch branch $tg_branch from $tg_repo_url"
    tg_finish failed "$tg_commit"
  fi

  tg_step checkout
  tg_check_commit
  tg_head_before=$(tg_git rev-parse --verify -q HEAD) || tg_head_before=""
  tg_file_drift=0
  local changed
  changed=$(tg_modified 2>/dev/null; tg_untracked 2>/dev/null) || true
  if [[ -n $changed ]]; then
    tg_file_drift=1
    tg_say "the checkout $tg_checkout differs from the commit; restoring these files" \
      "(removing those the commit does not have) and recreating the containers:"
    tg_say "$changed"
    tg_up+=(--force-recreate)
    # Removed while nothing has changed yet: a file the deploy user cannot
    # remove (another user's) stops the deploy here, not half-way.
    if ! tg_git "${tg_clean[@]}" --quiet >&2; then
      tg_say "could not remove the files above from $tg_checkout; nothing was deployed"
      tg_note="reason=unremovable-files"
      tg_finish failed "$tg_commit"
    fi
  fi
  tg_changed=1
  tg_current_step=checkout
  tg_checkout_exactly "$tg_commit" || tg_rollback checkout
  if tg_is_noop; then
    tg_say "$tg_commit is already deployed and healthy"
    tg_finish noop "$tg_commit"
  fi
  tg_bad_services=()

  if ((tg_req_pull)); then
    tg_deploy_step pull tg_dc pull --quiet --ignore-buildable
  else
    tg_step pull
    tg_say "pull skipped"
  fi
  tg_deploy_step up tg_up_stack
  tg_deploy_step health tg_healthy
  # The secrets (in memory since tg_secrets_parse) are stored as this commit's
  # only now that it runs.
  tg_record || tg_rollback record
  tg_finish deployed "$tg_commit"
}

# ------------------------------------------------------------------ status

tg_verdict() {
  printf '%s\n' "$1"
  return "${tg_verdicts[$1]}"
}

tg_status() {
  local problem
  problem=$(tg_bad_request root branch keep)
  if [[ -n $problem ]]; then
    tg_say "status: the request's $problem"
    return "${tg_results[refused]}"
  fi
  tg_root=${tg_req_root%/}
  tg_checkout="$tg_root/checkout"
  tg_clean_args

  local deployed tip="" head="" sync=1 states svc state health current f
  deployed=$(tg_read_deployed)
  printf 'deployed: %s\n' "${deployed:-none}"
  [[ -n $deployed ]] || sync=0

  if [[ -d "$tg_checkout/.git" ]]; then
    tip=$(timeout 60 git -C "$tg_checkout" ls-remote --heads origin "refs/heads/$tg_req_branch" 2>/dev/null) || tip=""
    tip=${tip%%[[:space:]]*}
    head=$(tg_git rev-parse --verify -q HEAD 2>/dev/null) || head=""
  fi
  printf 'branch: %s\n' "${tip:-unknown}"
  [[ -n $tip && $tip == "$deployed" ]] || sync=0
  [[ -n $head && $head == "$deployed" ]] || sync=0

  if [[ -d "$tg_checkout/.git" && -n $deployed ]] && tg_secrets_load "$deployed"; then
    if states=$(tg_service_states 2>/dev/null); then
      while read -r svc state health current _; do
        [[ -n $svc ]] || continue
        printf 'service %s %s %s\n' "$svc" "$state" "$health"
        [[ $state == running && ($health == none || $health == healthy) ]] || sync=0
        [[ $current == current ]] || {
          printf 'drift: container %s\n' "$svc"
          sync=0
        }
      done < <(printf '%s\n' "$states")
    else
      tg_say "status: docker compose could not read the project in $tg_checkout"
      sync=0
    fi
    while IFS= read -r f; do
      printf 'drift: file %s\n' "$f"
      sync=0
    done < <(tg_modified 2>/dev/null)
    while IFS= read -r f; do
      printf 'drift: untracked %s\n' "$f"
      sync=0
    done < <(tg_untracked 2>/dev/null)
  else
    [[ -z $deployed ]] || tg_say "status: no secrets stored for $deployed"
    sync=0
  fi

  if ((sync)); then tg_verdict in-sync; else tg_verdict out-of-sync; fi
}

# ---------------------------------------------------------------- deployed

# The deployed commit, then the newest commit in the history, other than the
# deployed one, that is older than it and whose secrets are stored.
tg_deployed_op() {
  local problem deployed sha
  problem=$(tg_bad_request root)
  if [[ -n $problem ]]; then
    tg_say "deployed: the request's $problem"
    return "${tg_results[refused]}"
  fi
  tg_root=${tg_req_root%/}
  tg_checkout="$tg_root/checkout"
  deployed=$(tg_read_deployed)
  tg_marker "deployed ${deployed:-none}"
  if [[ -n $deployed && -f "$tg_root/history" ]]; then
    while read -r sha; do
      if tg_is_sha "$sha" && [[ $sha != "$deployed" && -f $(tg_secrets_file "$sha") ]] \
        && tg_git merge-base --is-ancestor "$sha" "$deployed" 2>/dev/null; then
        tg_marker "previous $sha"
        return 0
      fi
    done < <(tac "$tg_root/history")
  fi
  tg_marker "previous none"
}

# -------------------------------------------------------------------- data

# Emits the one result of a data op: audit line (backup and restore), marker,
# exit code.
tg_data_finish() {
  local result=$1
  if [[ $tg_op != backups ]]; then
    printf '%s commit=%s result=%s op=%s backup=%s by=%s run=%s user=%s%s\n' \
      "$(tg_now)" "${tg_deployed:-none}" "$result" "$tg_op" "${tg_backup:--}" \
      "$tg_req_actor" "$tg_req_run" "$(id -un)" "${tg_note:+ $tg_note}" >>"$tg_root/audit.log" \
      || tg_say "warning: could not append to $tg_root/audit.log"
  fi
  tg_marker "done $result"
  if [[ -n ${tg_lock_held:-} ]]; then
    : >"$tg_root/deploy.lock" 2>/dev/null || true
  fi
  exit "${tg_data_results[$result]}"
}

# Runs the backup service's script in its container with ARGS; its markers
# pass through as they come (and are kept in tg_data_out), its messages go to
# stderr; its exit code comes last, on a line of its own.
tg_backup_script() {
  local line rc=1
  tg_data_out=""
  while IFS= read -r line; do
    if [[ $line =~ ^@@rc\ ([0-9]+)$ ]]; then
      rc=${BASH_REMATCH[1]}
    else
      printf '%s\n' "$line" || true
      tg_data_out+=$line$'\n'
    fi
  done < <(
    tg_dc_out exec -T backup /bin/sh "$tg_req_backup_script" "$@"
    printf '@@rc %s\n' "$?"
  )
  return "$rc"
}

# backup, backups and restore: on the deployed commit's stack, with the
# secrets it was deployed with (compose needs them to read the project).
tg_data_op() {
  local problem fields=(root actor run lock_wait backup_script)
  tg_op=$1
  [[ $tg_op != restore ]] || fields+=(backup timeout health_url)
  problem=$(tg_bad_request "${fields[@]}")
  if [[ -n $problem ]]; then
    tg_say "$tg_op: the request's $problem"
    tg_marker "done refused"
    return "${tg_data_results[refused]}"
  fi
  tg_root=${tg_req_root%/}
  tg_checkout="$tg_root/checkout"
  tg_backup=${tg_req_backup:-}
  tg_deployed=$(tg_read_deployed)
  if [[ -z $tg_deployed ]] || ! tg_secrets_load "$tg_deployed"; then
    tg_say "$tg_op: nothing is deployed in $tg_root"
    tg_data_finish refused
  fi
  if [[ $tg_op != backups ]]; then
    tg_step lock
    exec 9>>"$tg_root/deploy.lock"
    if ! flock -w "$tg_req_lock_wait" 9; then
      tg_say "deploy in progress by $(head -n 1 "$tg_root/deploy.lock" 2>/dev/null || echo unknown)"
      tg_data_finish lock-busy
    fi
    tg_lock_held=1
    printf '%s (%s@%s pid=%s) %s started=%s\n' "$tg_req_actor" "$(id -un)" \
      "${HOSTNAME:-$(uname -n)}" "$$" "$tg_op" "$(tg_now)" >"$tg_root/deploy.lock"
  fi
  if [[ -z $(tg_dc_out ps --status running -q backup 2>/dev/null) ]]; then
    tg_say "$tg_op: the stack deployed in $tg_root runs no backup service (add a" \
      "\`backup\` section to the environment and deploy it)"
    tg_data_finish refused
  fi
  case $tg_op in
    backups)
      tg_backup_script list || tg_data_finish failed
      tg_data_finish listed
      ;;
    backup)
      if ! tg_backup_script take on-demand; then
        tg_data_finish failed
      fi
      tg_backup=$(sed -n 's/^@@tracker-gitops backup \([^ ]*\) .*/\1/p' <<<"$tg_data_out")
      tg_data_finish backed-up
      ;;
    restore) tg_restore ;;
  esac
}

# Only the tracker stops: the backup service swaps the data while the rest of
# the stack runs; the tracker is started again whatever happened, and passes
# the health gate.
tg_restore() {
  local restored=1
  tg_timeout=$tg_req_timeout
  tg_health_url=$tg_req_health_url
  tg_bad_services=()
  tg_backup_script list >/dev/null || tg_data_finish failed
  if [[ $tg_data_out != *"@@tracker-gitops backup $tg_backup "* ]]; then
    tg_say "restore: no backup $tg_backup (tracker-gitops backup --list shows them)"
    tg_data_finish refused
  fi
  tg_step stop
  tg_dc stop tracker || tg_data_finish failed
  tg_step restore
  tg_backup_script restore "$tg_backup" || restored=0
  tg_step start
  tg_dc start tracker || tg_data_finish failed
  tg_step health
  if ! tg_healthy; then
    tg_note="step=health"
    tg_data_finish failed
  fi
  ((restored)) || tg_data_finish failed
  tg_data_finish restored
}

tg_main "$@" </dev/null
exit $?
