#!/usr/bin/env bash
# Runs one tracker-gitops command for the composite action (action.yml); the
# CLI itself writes the step outputs.
#
# Environment (set by action.yml; inputs are never expanded into script text):
#   TG_BIN           path of the tracker-gitops binary
#   TG_COMMAND       validate | check | plan | publish
#   TG_ENVIRONMENTS  whitespace-separated environment names (empty = all)
#   TG_ARGS          extra arguments, split on whitespace (no quoting, no globbing)
#   TG_COMMENT       plan: post/update the sticky PR comment (true/false)
#   TG_TOKEN         token exported as GITHUB_TOKEN to `plan` and `publish` only
#
# This script only builds the argument list: the CLI writes every step output
# (changed, plan-file, published, published-environments) and its annotations.
# The extra arguments come last: for a flag given twice the last one wins, so
# they override the defaults set here (e.g. `--remote origin`).
#
# The exit status is the CLI's: 0 ok, 1 the checked thing is wrong, 2 error.
set -euo pipefail

die() {
	printf '::error title=tracker-gitops::%s\n' "$*" >&2
	exit 2
}

bin=${TG_BIN:?TG_BIN is not set}
command=${TG_COMMAND:-}
: "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"

# Inputs -> arrays, without eval: `read -a` splits on IFS and never globs.
envs=()
extra=()
read -r -d '' -a envs <<<"${TG_ENVIRONMENTS:-}" || true
read -r -d '' -a extra <<<"${TG_ARGS:-}" || true

flags=()
for e in "${envs[@]}"; do
	[[ ${e} =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
		die "invalid environment name '${e}' (letters, digits, '.', '_', '-')"
	flags+=(--env "${e}")
done

uses_token=false
case "${command}" in
validate) cli=(validate "${flags[@]}") ;;
check) cli=(render --check "${flags[@]}") ;;
plan)
	# The base defaults to the pull request's base commit (from the event),
	# which actions/checkout must have fetched: use fetch-depth: 0.
	cli=(plan "${flags[@]}")
	if [[ ${TG_COMMENT:-true} == true ]]; then
		case "${GITHUB_EVENT_NAME:-}" in
		pull_request | pull_request_target) cli+=(--comment) ;;
		esac
	fi
	uses_token=true
	;;
publish)
	# --push needs --remote; actions/checkout names the remote origin.
	cli=(publish --push --remote origin "${flags[@]}")
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

printf '+ tracker-gitops %s\n' "${cli[*]}" >&2
exec "${bin}" "${cli[@]}"
