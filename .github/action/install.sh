#!/usr/bin/env bash
# Installs the tracker-gitops binary for the composite action (action.yml).
#
#   install.sh resolve   decide how to install; writes to $GITHUB_OUTPUT:
#                          mode       release | source
#                          version    release tag to download (mode=release)
#                          target     Rust target triple of this runner (may be empty)
#                          dir        install root; the binary is <dir>/bin/tracker-gitops
#                          cache-key  key for actions/cache
#   install.sh install   download + verify the release asset (mode=release) or
#                        `cargo install --locked --path $GITHUB_ACTION_PATH` (mode=source)
#
# Environment (set by action.yml, never expanded into the script text):
#   TG_VERSION            the `version` input: a release tag, `source`, or empty
#   TG_ACTION_REF         ${{ github.action_ref }} (empty in some runner versions)
#   TG_ACTION_REPOSITORY  ${{ github.action_repository }} (likewise)
#   TG_TOKEN              token used for GitHub API calls (rate limits)
#   TG_MODE, TG_RELEASE_VERSION, TG_TARGET, TG_DIR   outputs of `resolve`, for `install`
#   GITHUB_ACTION_PATH, GITHUB_API_URL, GITHUB_SERVER_URL, RUNNER_OS, RUNNER_ARCH,
#   RUNNER_TEMP, ImageOS  provided by the runner
set -euo pipefail

readonly NAME=tracker-gitops

log() { printf '%s\n' "$*" >&2; }
warn() { printf '::warning title=tracker-gitops install::%s\n' "$*" >&2; }
die() {
	printf '::error title=tracker-gitops install::%s\n' "$*" >&2
	exit 2
}

set_output() { printf '%s=%s\n' "$1" "$2" >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"; }

api_url() { printf '%s' "${GITHUB_API_URL:-https://api.github.com}"; }
server_url() { printf '%s' "${GITHUB_SERVER_URL:-https://github.com}"; }

# curl against the GitHub API; the token is sent only there (never to the
# download host, which redirects to a storage service).
api_get() {
	local path=$1 accept=${2:-application/vnd.github+json}
	local -a auth=()
	if [[ -n ${TG_TOKEN:-} ]]; then
		auth=(-H "Authorization: Bearer ${TG_TOKEN}")
	fi
	curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 10 --max-time 60 \
		-H "Accept: ${accept}" -H 'X-GitHub-Api-Version: 2022-11-28' \
		"${auth[@]}" "$(api_url)${path}"
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
		local path=${GITHUB_ACTION_PATH:-}
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
	sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
		"${GITHUB_ACTION_PATH}/Cargo.toml" | head -n 1
}

# True when release <tag> of <repo> has both the tarball and its checksum.
release_has_asset() {
	local repo=$1 tag=$2 asset=$3 json
	json=$(api_get "/repos/${repo}/releases/tags/${tag}" 2>/dev/null) || return 1
	grep -Eq "\"name\":[[:space:]]*\"${asset//./\\.}\"" <<<"${json}" &&
		grep -Eq "\"name\":[[:space:]]*\"${asset//./\\.}\\.sha256\"" <<<"${json}"
}

commit_of() {
	api_get "/repos/$1/commits/$2" application/vnd.github.sha 2>/dev/null
}

source_hash() {
	(
		cd "${GITHUB_ACTION_PATH}"
		local -a paths=()
		local p
		for p in Cargo.toml Cargo.lock build.rs src templates schema; do
			[[ -e ${p} ]] && paths+=("${p}")
		done
		find "${paths[@]}" -type f -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
	)
}

resolve() {
	local target version="${TG_VERSION:-}" mode=source tag=''
	target=$(detect_target)
	action_identity
	local repo=${ACTION_REPO} ref=${ACTION_REF}
	log "action: ${repo:-?}@${ref:-?}; runner target: ${target:-none}"

	if [[ ${version} == source ]]; then
		log "version=source: building from the action's source"
	elif [[ -z ${target} ]]; then
		log "no prebuilt binary for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}: building from source"
	elif [[ -z ${repo} ]]; then
		log "cannot tell which repository this action comes from: building from source"
	else
		local asset="${NAME}-${target}.tar.gz"
		local -a candidates=()
		if [[ -n ${version} ]]; then
			candidates=("${version}")
		elif [[ ${ref} =~ ^v[0-9] ]]; then
			candidates=("${ref}")
			# A moving major/minor tag (v1, v1.2) usually has no release of its own:
			# use the release of the crate version at that ref, if both tags are
			# the same commit.
			local crate
			crate=$(crate_version || true)
			if [[ ${ref} =~ ^v[0-9]+(\.[0-9]+)?$ && -n ${crate} && v${crate} == "${ref}".* ]]; then
				local a b
				a=$(commit_of "${repo}" "${ref}" || true)
				b=$(commit_of "${repo}" "v${crate}" || true)
				if [[ -z ${a} || -z ${b} ]]; then
					log "could not resolve ${ref} and v${crate} to commits; not using release v${crate}"
				elif [[ ${a} == "${b}" ]]; then
					candidates+=("v${crate}")
				else
					log "${ref} (${a}) and v${crate} (${b}) differ; not using release v${crate}"
				fi
			fi
		elif [[ ${ref} =~ ^[0-9a-f]{40}$ ]]; then
			# Pinned by commit SHA: use the release of the crate version at that
			# commit if its tag is that very commit.
			local crate tagged
			crate=$(crate_version || true)
			tagged=$(if [[ -n ${crate} ]]; then commit_of "${repo}" "v${crate}" || true; fi)
			if [[ -n ${crate} && ${tagged} == "${ref}" ]]; then
				candidates=("v${crate}")
			else
				log "commit ${ref} is not the tag v${crate:-?}: building from source"
			fi
		else
			log "action ref '${ref}' is not a release tag: building from source"
		fi
		local c
		for c in "${candidates[@]}"; do
			if release_has_asset "${repo}" "${c}" "${asset}"; then
				mode=release
				tag=${c}
				break
			fi
			log "release ${c} of ${repo} has no ${asset} (+ .sha256)"
		done
		if [[ ${mode} == source && ${#candidates[@]} -gt 0 ]]; then
			warn "no prebuilt ${asset} found for ${candidates[*]}; building ${repo}@${ref} from source (slow)"
		fi
	fi

	local key
	if [[ ${mode} == release ]]; then
		key="${NAME}-${tag}-${target}"
	else
		[[ -f ${GITHUB_ACTION_PATH}/Cargo.toml ]] ||
			die "cannot build from source: no Cargo.toml in ${GITHUB_ACTION_PATH}"
		key="${NAME}-src-$(source_hash)-${RUNNER_OS:-os}-${RUNNER_ARCH:-arch}-${ImageOS:-image}"
		if [[ -n ${version} && ${version} != source ]]; then
			warn "version ${version} requested but the binary is built from the action's own source (${ref:-local})"
		fi
	fi
	local dir="${RUNNER_TEMP:-/tmp}/${NAME}/${key}"

	log "install mode: ${mode}${tag:+ (${tag})}; cache key: ${key}"
	set_output mode "${mode}"
	set_output version "${tag}"
	set_output target "${target}"
	set_output dir "${dir}"
	set_output cache-key "${key}"
}

install_release() {
	local tag=${TG_RELEASE_VERSION:?} target=${TG_TARGET:?} dir=${TG_DIR:?}
	action_identity
	local repo=${ACTION_REPO}
	[[ -n ${repo} ]] || die "cannot tell which repository this action comes from"
	local asset="${NAME}-${target}.tar.gz"
	local base
	base="$(server_url)/${repo}/releases/download/${tag}"
	local tmp
	tmp=$(mktemp -d "${RUNNER_TEMP:-/tmp}/${NAME}-dl.XXXXXX")

	log "downloading ${base}/${asset}"
	curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 10 --max-time 300 \
		-o "${tmp}/${asset}" "${base}/${asset}" ||
		die "download of ${asset} from release ${tag} failed"
	curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 10 --max-time 60 \
		-o "${tmp}/${asset}.sha256" "${base}/${asset}.sha256" ||
		die "download of ${asset}.sha256 from release ${tag} failed"

	# The checksum file must name exactly our asset, then sha256sum -c checks it.
	local listed
	listed=$(awk 'NF { sub(/^\*/, "", $2); print $2 }' "${tmp}/${asset}.sha256")
	[[ ${listed} == "${asset}" ]] ||
		die "${asset}.sha256 does not list exactly ${asset} (got: ${listed//$'\n'/ })"
	(cd "${tmp}" && sha256sum --check --strict "${asset}.sha256") >&2 ||
		die "checksum mismatch for ${asset} of release ${tag}"

	mkdir -p "${dir}/bin"
	tar -xzf "${tmp}/${asset}" -C "${tmp}"
	[[ -f ${tmp}/${NAME} ]] || die "${asset} does not contain ${NAME} at its top level"
	command install -m 0755 "${tmp}/${NAME}" "${dir}/bin/${NAME}"
	rm -rf "${tmp}"
}

install_source() {
	local dir=${TG_DIR:?}
	command -v cargo >/dev/null ||
		die "no prebuilt binary and no cargo on this runner: install Rust first (rustup), or use a release tag"
	log "cargo install --locked --path ${GITHUB_ACTION_PATH}"
	CARGO_TARGET_DIR="${RUNNER_TEMP:-/tmp}/${NAME}-target" \
		cargo install --locked --quiet --path "${GITHUB_ACTION_PATH}" --root "${dir}" ||
		die "cargo install failed"
}

do_install() {
	# A second use of the action in the same job finds the first one's binary.
	if [[ -x ${TG_DIR:?}/bin/${NAME} ]] && "${TG_DIR}/bin/${NAME}" --version >&2; then
		log "already installed in ${TG_DIR}"
		return
	fi
	case "${TG_MODE:?}" in
	release) install_release ;;
	source) install_source ;;
	*) die "unknown install mode '${TG_MODE}'" ;;
	esac
	"${TG_DIR}/bin/${NAME}" --version >&2 || die "installed binary does not run"
}

case "${1:-}" in
resolve) resolve ;;
install) do_install ;;
*) die "usage: install.sh resolve|install" ;;
esac
