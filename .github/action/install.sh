#!/usr/bin/env bash
# Installs the tracker-gitops binary for the composite action (action.yml).
#
# Trust: the binary is tied to the action's commit. The SHA-256 of each
# release tarball is committed with the action in checksums.txt (next to this
# script; release.yml proposes it in a pull request), so pinning the action to
# a commit SHA pins the binary. Nothing from the release itself is trusted: the
# tarball, cached or downloaded, is checked against the committed checksum on
# every run, and without a committed checksum the action's own source is built.
#
#   install.sh resolve          decide how to install; writes to $GITHUB_OUTPUT:
#                                 mode       release | source
#                                 version    release tag (mode=release)
#                                 target     Rust target triple of this runner (may be empty)
#                                 sha256     committed checksum of the tarball (mode=release)
#                                 dir        install root; the binary is <dir>/bin/tracker-gitops
#                                 cache-key  actions/cache key of <dir>/download (mode=release)
#   install.sh install          mode=release: verify the cached tarball, else download and
#                               verify it, then extract the binary from it; mode=source:
#                               `cargo install --locked --path $GITHUB_ACTION_PATH` in a
#                               clean environment. Writes `path` (the binary) to $GITHUB_OUTPUT.
#   install.sh source-hash DIR  hash of the files in DIR the binary is built from
#                               (release.yml records it with each checksum)
#
# Environment (set by action.yml, never expanded into the script text):
#   TG_VERSION            the `version` input: a release tag, `source`, or empty
#   TG_ACTION_REF         ${{ github.action_ref }} (empty in some runner versions)
#   TG_ACTION_REPOSITORY  ${{ github.action_repository }} (likewise)
#   TG_MODE, TG_RELEASE_VERSION, TG_TARGET, TG_SHA256, TG_DIR   outputs of `resolve`
#   GITHUB_ACTION_PATH, GITHUB_SERVER_URL, RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP
#                         provided by the runner
# No token: release assets need none, and the committed checksum, not the
# transport, vouches for what is downloaded.
set -euo pipefail

readonly NAME=tracker-gitops

log() { printf '%s\n' "$*" >&2; }
notice() { printf '::notice title=tracker-gitops install::%s\n' "$*" >&2; }
warn() { printf '::warning title=tracker-gitops install::%s\n' "$*" >&2; }
die() {
	printf '::error title=tracker-gitops install::%s\n' "$*" >&2
	exit 2
}

set_output() { printf '%s=%s\n' "$1" "$2" >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"; }

action_path() { printf '%s' "${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}"; }

# A composite action shares its caller's environment with every one of its
# steps: this script, actions/cache, cargo and the build scripts it runs.
# Deploy secrets belong to the one step that runs `deploy` (docs/github.md).
refuse_deploy_secrets() {
	[[ -z ${TRACKER_GITOPS_SSH_KEY:-} ]] ||
		die "TRACKER_GITOPS_SSH_KEY is in the environment of the action's steps, where every install step can read it. Give deploy secrets only to the step that runs \`tracker-gitops deploy\` (docs/github.md, \"Deploy\")."
}

# Rust target triple for the runner, or empty when no prebuilt binary exists.
detect_target() {
	local os=${RUNNER_OS:-$(uname -s)} arch=${RUNNER_ARCH:-$(uname -m)}
	case "${os}" in
	Linux | linux) ;;
	*) return 0 ;;
	esac
	case "${arch}" in
	X64 | x86_64 | amd64) printf 'x86_64-unknown-linux-gnu' ;;
	ARM64 | aarch64 | arm64) printf 'aarch64-unknown-linux-gnu' ;;
	*) return 0 ;;
	esac
}

# Sets ACTION_REPO (<owner>/<repo>) and ACTION_REF of this action. The
# expression values are empty in some runner versions for composite actions
# (actions/runner#2473), so fall back to the checkout path, which is
# .../_actions/<owner>/<repo>/<ref> for a remote action.
action_identity() {
	ACTION_REPO=${TG_ACTION_REPOSITORY:-}
	ACTION_REF=${TG_ACTION_REF:-}
	if [[ -z ${ACTION_REPO} || -z ${ACTION_REF} ]]; then
		local path
		path=$(action_path)
		if [[ ${path} == */_actions/*/*/* ]]; then
			local rest=${path#*/_actions/}
			local owner=${rest%%/*}
			rest=${rest#*/}
			ACTION_REPO="${owner}/${rest%%/*}"
			ACTION_REF=${rest#*/}
		fi
	fi
}

crate_version() {
	sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$(action_path)/Cargo.toml" | head -n 1
}

source_hash() {
	(
		cd "$1"
		local -a paths=()
		local p
		for p in Cargo.toml Cargo.lock build.rs src templates schema; do
			[[ -e ${p} ]] && paths+=("${p}")
		done
		find "${paths[@]}" -type f -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
	)
}

checksums_file() { printf '%s/.github/action/checksums.txt' "$(action_path)"; }

# Every line is a comment or `<tag> <target> <source hash> <sha256>`.
check_checksums() {
	local file line n=0
	local entry='^v[0-9A-Za-z.+-]+ [a-z0-9_]+(-[a-z0-9_]+)+ [0-9a-f]{64} [0-9a-f]{64}$'
	file=$(checksums_file)
	[[ -f ${file} ]] || die "${file} is missing"
	while IFS= read -r line || [[ -n ${line} ]]; do
		n=$((n + 1))
		[[ -z ${line} || ${line} == \#* || ${line} =~ ${entry} ]] ||
			die "${file}:${n}: expected \`<tag> <target> <source hash> <sha256>\`"
	done <"${file}"
}

# The committed sha256 of <tag>'s tarball for <target>; with <source>, only
# when that release was built from exactly that source.
committed_checksum() {
	local tag=$1 target=$2 source=${3:-} t g s sum
	while read -r t g s sum; do
		if [[ ${t} == "${tag}" && ${g} == "${target}" && (-z ${source} || ${s} == "${source}") ]]; then
			printf '%s' "${sum}"
			return 0
		fi
	done <"$(checksums_file)"
	return 1
}

resolve() {
	refuse_deploy_secrets
	local version=${TG_VERSION:-} mode=source tag='' sum='' target crate source
	[[ -f "$(action_path)/Cargo.toml" ]] || die "no Cargo.toml in $(action_path): not a tracker-gitops checkout"
	check_checksums
	target=$(detect_target)
	crate=$(crate_version)
	source=$(source_hash "$(action_path)")
	action_identity
	log "action: ${ACTION_REPO:-local}@${ACTION_REF:-?} (version ${crate}, source ${source}); runner target: ${target:-none}"

	if [[ ${version} == source ]]; then
		log "version: source: building the action's source"
	elif [[ -z ${target} ]]; then
		notice "no prebuilt binary for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}: building the action's source with cargo"
	elif [[ -z ${ACTION_REPO} ]]; then
		notice "cannot tell which repository this action comes from: building its source with cargo"
	elif [[ -n ${version} ]]; then
		if sum=$(committed_checksum "${version}" "${target}"); then
			mode=release tag=${version}
		else
			warn "no checksum of release ${version} (${target}) is committed with this action (${ACTION_REF:-?}): building the action's own source (${crate}) instead"
		fi
	elif sum=$(committed_checksum "v${crate}" "${target}" "${source}"); then
		mode=release tag=v${crate}
	else
		notice "no release binary is committed for this action's source (v${crate}, ${target}): building it with cargo"
	fi

	log "install mode: ${mode}${tag:+ (${tag}, sha256 ${sum})}"
	set_output mode "${mode}"
	set_output version "${tag}"
	set_output target "${target}"
	set_output sha256 "${sum}"
	if [[ ${mode} == release ]]; then
		local key="${NAME}-${tag}-${target}-${sum}"
		set_output dir "${RUNNER_TEMP:-/tmp}/${NAME}/${key}"
		# The key names the content; an entry under it that holds anything
		# else is refused by `install` all the same.
		set_output cache-key "${key}"
	else
		# Never cached: nothing could vouch for a restored build.
		set_output dir "${RUNNER_TEMP:-/tmp}/${NAME}/src-${source}"
	fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

install_release() {
	local tag=${TG_RELEASE_VERSION:?} target=${TG_TARGET:?} dir=${TG_DIR:?} want=${TG_SHA256:?}
	action_identity
	[[ -n ${ACTION_REPO} ]] || die "cannot tell which repository this action comes from"
	local asset="${NAME}-${target}.tar.gz"
	local cached="${dir}/download/${asset}"
	local url="${GITHUB_SERVER_URL:-https://github.com}/${ACTION_REPO}/releases/download/${tag}/${asset}"
	# Checked and extracted from a private copy: nothing can swap the file
	# between the check and its use.
	local tmp got
	tmp=$(mktemp -d "${RUNNER_TEMP:-/tmp}/${NAME}-install.XXXXXX")
	if [[ -f ${cached} ]]; then
		cp "${cached}" "${tmp}/${asset}"
		got=$(sha256_of "${tmp}/${asset}")
		if [[ ${got} == "${want}" ]]; then
			log "cached ${asset} matches the committed checksum"
		else
			warn "cached ${asset} has sha256 ${got}, not the ${want} committed with the action: refused, downloading it again"
			rm -f "${cached}" "${tmp}/${asset}"
		fi
	fi
	if [[ ! -f ${tmp}/${asset} ]]; then
		log "downloading ${url}"
		curl --fail --silent --show-error --location --proto '=https' --proto-redir '=https' \
			--retry 3 --retry-delay 2 --connect-timeout 10 --max-time 300 \
			--output "${tmp}/${asset}" "${url}" ||
			die "download of ${url} failed (a private action repository needs \`version: source\`)"
		got=$(sha256_of "${tmp}/${asset}")
		if [[ ${got} != "${want}" ]]; then
			rm -rf "${tmp}"
			die "${asset} of release ${tag} has sha256 ${got}, but the action commits ${want} for it: refused"
		fi
		# For actions/cache to save; checked again when restored.
		mkdir -p "${dir}/download"
		cp "${tmp}/${asset}" "${cached}"
	fi
	# Extracted on every run: whatever is in <dir>/bin is replaced.
	tar -xzf "${tmp}/${asset}" -C "${tmp}" "${NAME}" && [[ -f ${tmp}/${NAME} ]] ||
		die "${asset} does not hold ${NAME} at its top level"
	mkdir -p "${dir}/bin"
	command install -m 0755 "${tmp}/${NAME}" "${dir}/bin/${NAME}"
	rm -rf "${tmp}"
}

install_source() {
	local dir=${TG_DIR:?} path
	path=$(action_path)
	if [[ -x ${dir}/bin/${NAME} ]]; then
		# RUNNER_TEMP is emptied at the start of every job: an earlier step of
		# this job built it from this very source.
		log "reusing ${dir}/bin/${NAME}, built earlier in this job"
		return
	fi
	command -v cargo >/dev/null ||
		die "no release binary is committed for this action and there is no cargo on this runner: install Rust first (rustup), or pin a released commit of the action"
	# The build scripts of dependencies run here: they get a minimal
	# environment, never the caller's (tokens, secrets).
	local -a keep=()
	local name
	for name in PATH HOME CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN \
		HTTPS_PROXY https_proxy HTTP_PROXY http_proxy NO_PROXY no_proxy SSL_CERT_FILE SSL_CERT_DIR; do
		if [[ -n ${!name:-} ]]; then keep+=("${name}=${!name}"); fi
	done
	log "cargo install --locked --path ${path} (clean environment)"
	env -i "${keep[@]}" CARGO_TARGET_DIR="${RUNNER_TEMP:-/tmp}/${NAME}-target" \
		cargo install --locked --quiet --path "${path}" --root "${dir}" ||
		die "cargo install failed"
}

do_install() {
	refuse_deploy_secrets
	case "${TG_MODE:?}" in
	release) install_release ;;
	source) install_source ;;
	*) die "unknown install mode '${TG_MODE}'" ;;
	esac
	local bin="${TG_DIR}/bin/${NAME}"
	"${bin}" --version >&2 || die "the installed binary does not run"
	set_output path "${bin}"
}

case "${1:-}" in
resolve) resolve ;;
install) do_install ;;
source-hash) source_hash "${2:?usage: install.sh source-hash DIR}" ;;
*) die "usage: install.sh resolve|install|source-hash DIR" ;;
esac
