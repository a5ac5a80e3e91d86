#!/usr/bin/env bash
# Builds the upstream tools the e2e suite and the chart checks run, from the Go module proxy, into
# a cache outside the repository, and prints ONE bin directory holding all of them on stdout:
#
#   kube-apiserver kube-controller-manager kube-scheduler etcd kwok   the control plane
#   helm        installs/renders the chart (stamped like upstream's release build, see build_helm)
#   helm-docs   generates the chart's README values table (charts/podscaler/check.sh diffs it)
#   promtool    `promtool check metrics` on the binaries' /metrics
#
# Each tool has its own cache entry, $cache/tools/<tool>-<key>/<tool>, keyed by its recipe only:
# the text of its build function, its pinned version and the files it builds from (see recipe()).
# Changing one tool's recipe rebuilds that tool alone. The printed bin directory,
# $cache/bin-<key of all keys>/, holds symlinks to the entries; it is created once per combination.
# A run that finds everything prints only the directory (nothing on stderr) and returns at once.
# A run that has to build says first, in one stderr line, what and roughly how long.
#
#   e2e/controlplane/build.sh            # build (or reuse) and print the bin directory
#   PODSCALER_E2E_CACHE=/some/dir ...    # cache root (default: ~/.cache/podscaler-e2e)
#
# Old entries are never deleted; `rm -rf ~/.cache/podscaler-e2e/{tools,bin-*}` starts afresh.
set -euo pipefail

KUBERNETES_VERSION=v1.33.13
ETCD_VERSION=v3.5.21 # must equal the go.etcd.io/etcd/server/v3 version in go.mod
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.19.5
# The commit tag v3.19.5 points at in github.com/helm/helm (`git rev-parse v3.19.5^{commit}`):
# the module proxy serves no VCS data, and `helm version` reports it like a release binary does.
HELM_COMMIT=4a19a5b6fb912c5c28a779e73f2e0880d9e239a4
HELM_DOCS_VERSION=v1.14.2
# Prometheus v3.MINOR.PATCH is tagged v0.3MINOR.PATCH for Go modules: v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_VERSION=v0.316.0

tools=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok helm helm-docs promtool)
# Rough build times in seconds on this project's 2-core machine, loaded, with a cold Go build
# cache; only for the one-line announcement. With a warm build cache (a recipe change that only
# touches ldflags) each takes 1-30 s.
declare -A estimate=(
	[kube-apiserver]=150 [kube-controller-manager]=100 [kube-scheduler]=50 [etcd]=30
	[kwok]=40 [helm]=60 [helm-docs]=20 [promtool]=600
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${PODSCALER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podscaler-e2e}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { echo "controlplane: $*" >&2; }

# --- recipes: build_<tool> OUT_DIR writes the binary <tool> into OUT_DIR -----------------------

# Version stamps the Kubernetes release build (hack/lib/version.sh) sets.
k8s_ldflags() {
	local minor=${KUBERNETES_VERSION#v1.}
	minor=${minor%%.*}
	echo "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION" \
		"-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
		"-X k8s.io/component-base/version.gitTreeState=clean" \
		"-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
}

# kube-* and etcd are built from this module (go.mod pins them with the replace directives
# k8s.io/kubernetes needs), so they share its dependency versions.
build_k8s() {
	(cd "$here" && go build -trimpath -ldflags "$(k8s_ldflags)" -o "$2/$1" "k8s.io/kubernetes/cmd/$1")
}
build_kube_apiserver() { build_k8s kube-apiserver "$1"; }
build_kube_controller_manager() { build_k8s kube-controller-manager "$1"; }
build_kube_scheduler() { build_k8s kube-scheduler "$1"; }

build_etcd() {
	grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$here/go.mod" ||
		{ log "ETCD_VERSION $ETCD_VERSION does not match go.mod"; return 1; }
	(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$1/etcd" ./cmd/etcd)
}

# The tools below carry no replace directives of their own, so `go install pkg@version` builds
# exactly the released dependency set.
go_install() {
	local out=$1
	shift
	(cd / && GOBIN="$out" go install -trimpath "$@")
}

build_kwok() {
	go_install "$1" -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
		"sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

# Stamped as helm's Makefile (v3.19.5) does for a release: version, commit, tree state, and the
# Kubernetes version helm assumes when no cluster is asked (`helm template`/`lint` without
# --kube-version) = the client-go minor it was built with, major 0 -> 1. Unstamped, that default
# is v1.20.0 and every chart requiring a newer Kubernetes fails to render offline.
build_helm() {
	local client_go major minor
	client_go=$(cd / && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' | xargs grep -m1 '^[[:space:]]*k8s.io/client-go ' |
		awk '{print $2}')
	[[ $client_go =~ ^v0\.([0-9]+)\. ]] || { log "cannot read helm's client-go version ($client_go)"; return 1; }
	major=1 minor=${BASH_REMATCH[1]}
	local flags="-s -w"
	flags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	flags+=" -X helm.sh/helm/v3/internal/version.metadata="
	flags+=" -X helm.sh/helm/v3/internal/version.gitCommit=$HELM_COMMIT"
	flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	local pkg
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		flags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
	done
	go_install "$1" -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_helm_docs() {
	go_install "$1" -ldflags "-s -w" "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"
}

# remove_all_sd leaves out the service-discovery plugins (AWS, Azure, GCE, Kubernetes …):
# `promtool check metrics/rules` needs none of them, and they are most of the build.
build_promtool() {
	local minor=${PROMETHEUS_VERSION#v0.3} patch=${PROMETHEUS_VERSION##*.}
	minor=${minor%%.*}
	go_install "$1" -tags remove_all_sd \
		-ldflags "-s -w -X github.com/prometheus/common/version.Version=3.$((10#$minor)).$patch" \
		"github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

# --- cache ---------------------------------------------------------------------------------

# recipe TOOL: everything that decides TOOL's binary, as text.
recipe() {
	local tool=$1
	echo "CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
	declare -f "build_${tool//-/_}"
	case $tool in
	kube-*) declare -f build_k8s k8s_ldflags; echo "$KUBERNETES_VERSION"; cat "$here/go.mod" "$here/go.sum" ;;
	etcd) echo "$ETCD_VERSION"; cat "$here/go.mod" "$here/go.sum" "$here/cmd/etcd/main.go" ;;
	kwok) declare -f go_install; echo "$KWOK_VERSION" ;;
	helm) declare -f go_install; echo "$HELM_VERSION $HELM_COMMIT" ;;
	helm-docs) declare -f go_install; echo "$HELM_DOCS_VERSION" ;;
	promtool) declare -f go_install; echo "$PROMETHEUS_VERSION" ;;
	*) log "no recipe for $tool"; return 1 ;;
	esac
}

declare -A entry=()
for tool in "${tools[@]}"; do
	key=$(recipe "$tool" | sha256sum | cut -c1-12)
	entry[$tool]="$cache_root/tools/$tool-$key"
done
bin="$cache_root/bin-$(for tool in "${tools[@]}"; do echo "${entry[$tool]}"; done | sha256sum | cut -c1-12)"

complete() {
	local tool
	for tool in "${tools[@]}"; do [ -x "$bin/$tool" ] || return 1; done
}

if complete; then
	echo "$bin"
	exit 0
fi

missing=()
seconds=0
for tool in "${tools[@]}"; do
	if [ ! -x "${entry[$tool]}/$tool" ]; then
		missing+=("$tool")
		seconds=$((seconds + estimate[$tool]))
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "building ${missing[*]} from the Go module proxy (once per machine; up to ~$(((seconds + 59) / 60)) min on 2 cores)"
fi

mkdir -p "$cache_root/tools"
staging=$(mktemp -d "$cache_root/tools/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT

for tool in "${missing[@]}"; do
	start=$SECONDS
	mkdir "$staging/$tool"
	"build_${tool//-/_}" "$staging/$tool" >&2
	[ -x "$staging/$tool/$tool" ] || { log "building $tool produced no $tool binary"; exit 1; }
	# Another run may have finished the same entry meanwhile; both are built from the same recipe.
	mv -T "$staging/$tool" "${entry[$tool]}" 2>/dev/null || true
	log "built $tool in $((SECONDS - start))s"
done

# The bin directory appears whole or not at all: symlinks in a staging directory, then one rename.
mkdir "$staging/bin"
for tool in "${tools[@]}"; do
	ln -s "${entry[$tool]}/$tool" "$staging/bin/$tool"
done
mv -T "$staging/bin" "$bin" 2>/dev/null || true
complete || { log "the binaries are missing from $bin"; exit 1; }
echo "$bin"
