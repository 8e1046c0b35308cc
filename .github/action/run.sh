#!/usr/bin/env bash
# Runs one tracker-gitops command for the composite action (action.yml) and
# forwards its step outputs.
#
# Environment (set by action.yml; inputs are never expanded into script text):
#   TG_BIN           path of the tracker-gitops binary
#   TG_COMMAND       validate | check | plan | publish
#   TG_ENVIRONMENTS  whitespace-separated environment names (empty = all)
#   TG_ARGS          extra arguments, split on whitespace (no quoting, no globbing)
#   TG_COMMENT       plan: post/update the sticky PR comment (true/false)
#   TG_TOKEN         token exported as GITHUB_TOKEN to `plan` and `publish` only
#
# Step outputs (besides whatever the CLI writes to $GITHUB_OUTPUT):
#   changed                  plan: JSON array of environment names ([] if not written)
#   published                publish: JSON object env -> commit sha ({} if not written)
#   published-environments   publish: JSON array of the keys of `published`
#   plan-file                plan: path of a file holding the Markdown plan
#
# The exit status is the CLI's: 0 ok, 1 the checked thing is wrong, 2 error.
set -euo pipefail

die() {
	printf '::error title=tracker-gitops::%s\n' "$*" >&2
	exit 2
}

bin=${TG_BIN:?TG_BIN is not set}
command=${TG_COMMAND:-}
real_output=${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}

# Inputs -> arrays, without eval: `read -a` splits on IFS and never globs.
envs=()
extra=()
read -r -d '' -a envs <<<"${TG_ENVIRONMENTS:-}" || true
read -r -d '' -a extra <<<"${TG_ARGS:-}" || true

for e in "${envs[@]}"; do
	[[ ${e} =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
		die "invalid environment name '${e}' (letters, digits, '.', '_', '-')"
done

has_arg() {
	local a
	for a in "${extra[@]}"; do
		[[ ${a} == "$1" || ${a} == "$1="* ]] && return 0
	done
	return 1
}

# Value of `--environments DIR` / `--environments=DIR` in args, else the default.
environments_dir() {
	local i
	for ((i = 0; i < ${#extra[@]}; i++)); do
		case "${extra[i]}" in
		--environments=*)
			printf '%s' "${extra[i]#--environments=}"
			return
			;;
		--environments)
			printf '%s' "${extra[i + 1]:-environments}"
			return
			;;
		esac
	done
	printf 'environments'
}

env_flags() {
	local e
	for e in "${envs[@]}"; do
		printf '%s\0%s\0' --env "${e}"
	done
}

cli=()
uses_token=false
case "${command}" in
validate)
	cli=(validate)
	if [[ ${#envs[@]} -gt 0 ]]; then
		dir=$(environments_dir)
		for e in "${envs[@]}"; do
			cli+=("${dir}/${e}.json")
		done
	fi
	;;
check)
	mapfile -d '' -t flags < <(env_flags)
	cli=(render --check "${flags[@]}")
	;;
plan)
	# The base defaults to the pull request's base commit (from the event),
	# which actions/checkout must have fetched: use fetch-depth: 0.
	mapfile -d '' -t flags < <(env_flags)
	cli=(plan "${flags[@]}")
	if [[ ${TG_COMMENT:-true} == true ]] && ! has_arg --comment; then
		case "${GITHUB_EVENT_NAME:-}" in
		pull_request | pull_request_target) cli+=(--comment) ;;
		esac
	fi
	uses_token=true
	;;
publish)
	mapfile -d '' -t flags < <(env_flags)
	cli=(publish --push "${flags[@]}")
	# --push needs --remote; actions/checkout names the remote origin.
	has_arg --remote || cli+=(--remote origin)
	uses_token=true
	;;
deploy | status)
	die "'${command}' needs the deploy secrets, which a composite action would hand to every one of its steps: use 'command: install', then run '<binary output> ${command} --env NAME' in a step of its own that alone gets the secrets (docs/github.md)"
	;;
'') die "input 'command' is required" ;;
*) die "unknown command '${command}' (validate|check|plan|publish|install)" ;;
esac
cli+=("${extra[@]}")

# Only the commands that talk to GitHub get the token.
if [[ ${uses_token} == true && -n ${TG_TOKEN:-} ]]; then
	export GITHUB_TOKEN="${TG_TOKEN}"
elif [[ ${uses_token} == false ]]; then
	unset GITHUB_TOKEN GH_TOKEN
fi
unset TG_TOKEN

# The CLI writes its outputs to a private file that this script parses and
# then appends to the real one, so defaults can be filled in.
cli_output=$(mktemp "${RUNNER_TEMP:-/tmp}/tracker-gitops-output.XXXXXX")
plan_file="${RUNNER_TEMP:-/tmp}/tracker-gitops-plan.md"

printf '+ tracker-gitops %s\n' "${cli[*]}" >&2
status=0
if [[ ${command} == plan ]]; then
	set +e
	GITHUB_OUTPUT=${cli_output} "${bin}" "${cli[@]}" | tee "${plan_file}"
	pipe=("${PIPESTATUS[@]}")
	set -e
	status=${pipe[0]}
	if [[ ${status} -eq 0 && ${pipe[1]} -ne 0 ]]; then
		printf '::error title=tracker-gitops::could not write %s\n' "${plan_file}" >&2
		status=2
	fi
	# Workflow commands (e.g. the ::warning:: of a refused comment) are for
	# the runner, not part of the Markdown plan.
	sed -i -E '/^::[a-z-]+( [^:]*)?::/d' "${plan_file}" || true
else
	GITHUB_OUTPUT=${cli_output} "${bin}" "${cli[@]}" || status=$?
fi

# Last value of KEY in a GITHUB_OUTPUT file (KEY=VALUE or KEY<<DELIM ... DELIM).
output_value() {
	local key=$1 file=$2 line value='' found=1 delim
	while IFS= read -r line || [[ -n ${line} ]]; do
		if [[ ${line} == "${key}="* ]]; then
			value=${line#"${key}="}
			found=0
		elif [[ ${line} == "${key}<<"* ]]; then
			delim=${line#"${key}<<"}
			value=''
			local first=true
			while IFS= read -r line || [[ -n ${line} ]]; do
				[[ ${line} == "${delim}" ]] && break
				if [[ ${first} == true ]]; then value=${line}; else value+=$'\n'${line}; fi
				first=false
			done
			found=0
		fi
	done <"${file}"
	printf '%s' "${value}"
	return "${found}"
}

json_keys() {
	if command -v jq >/dev/null; then
		jq -ce 'if type == "object" then keys else error("not an object") end' <<<"$1" 2>/dev/null
	else
		python3 -c 'import json, sys
d = json.load(sys.stdin)
assert isinstance(d, dict)
print(json.dumps(sorted(d), separators=(",", ":")))' <<<"$1" 2>/dev/null
	fi
}

cat "${cli_output}" >>"${real_output}"
case "${command}" in
plan)
	output_value changed "${cli_output}" >/dev/null || printf 'changed=[]\n' >>"${real_output}"
	printf 'plan-file=%s\n' "${plan_file}" >>"${real_output}"
	;;
publish)
	published=$(output_value published "${cli_output}") || published='{}'
	[[ -n ${published} ]] || published='{}'
	output_value published "${cli_output}" >/dev/null || printf 'published={}\n' >>"${real_output}"
	if keys=$(json_keys "${published}"); then
		printf 'published-environments=%s\n' "${keys}" >>"${real_output}"
	else
		printf '::warning title=tracker-gitops::publish wrote a published output that is not a JSON object: %s\n' "${published}" >&2
		printf 'published-environments=[]\n' >>"${real_output}"
		[[ ${status} -ne 0 ]] || status=2
	fi
	;;
esac
rm -f "${cli_output}"

exit "${status}"
