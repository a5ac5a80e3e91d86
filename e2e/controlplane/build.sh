#!/usr/bin/env bash
# Builds the upstream tools the e2e suite and the chart checks run, from the Go module proxy, into
# a cache outside the repository, and prints ONE bin directory holding all of them on stdout:
#
#   kube-apiserver kube-controller-manager kube-scheduler etcd kwok   the control plane
#   kubelet     the real node's agent (same module and stamps as the control plane)
#   pause       the pod sandbox's process, cmd/pause (a Go port of Kubernetes' pause.c)
#   cert-manager-controller cert-manager-cainjector cert-manager-webhook
#               cert-manager, from the wrapper module ../certmanager (which release and why: see
#               CERT_MANAGER_VERSION)
#   cert-manager.yaml  the one manifest installing it: Namespace, CRDs and its chart rendered
#               (not a binary; see build_cert_manager_yaml)
#   helm        installs/renders the chart (stamped like upstream's release build, see build_helm)
#   helm-docs   generates the chart's README values table (charts/podscaler/check.sh diffs it)
#   promtool    `promtool check metrics` on the binaries' /metrics
#   prometheus  the server, with Kubernetes service discovery only (see build_prometheus)
#
# Each tool has its own cache entry, $cache/tools/<tool>-<key>/<tool>, keyed by its recipe only:
# the text of its build function, its pinned version and the files it builds from (see recipe()).
# Changing one tool's recipe rebuilds that tool alone. The printed bin directory,
# $cache/bin-<key of all keys>/, holds symlinks to the entries; it is created once per combination.
# A run that finds everything prints only the directory (nothing on stderr) and returns at once.
# A run that has to build says first, in one stderr line, what and roughly how long.
#
#   e2e/controlplane/build.sh            # build (or reuse) all of them and print the bin directory
#   e2e/controlplane/build.sh control-plane   # only what the kwok control plane, the chart checks
#                                        # and podscaler-bench use (not the real node's tools)
#   PODSCALER_E2E_CACHE=/some/dir ...    # cache root (default: ~/.cache/podscaler-e2e)
#
# Old entries are never deleted; `rm -rf ~/.cache/podscaler-e2e/{tools,bin-*}` starts afresh.
set -euo pipefail

KUBERNETES_VERSION=v1.33.13
ETCD_VERSION=v3.5.21 # must equal the go.etcd.io/etcd/server/v3 version in go.mod
KWOK_VERSION=v0.7.0
# cert-manager is built from its Go module, and v1.11.5 is the newest release that can be. From
# v1.12 on, cmd/controller, cmd/cainjector and cmd/webhook are modules of their own
# (github.com/cert-manager/cert-manager/controller-binary, …) that reach the main module through
# `replace … => ../../`; the module proxy serves none of them, and the main module's zip has no
# cmd/ (checked for v1.21.2, the newest it lists). v1.11.5 (last of v1.11) still holds all three
# commands in the main module, and the proxy serves every dependency it needs, so nothing is
# dropped: every DNS-01 provider and the Venafi issuer are built in. Upstream supports v1.11 on
# Kubernetes 1.21-1.26; the real-node tier runs it against the v1.33 control plane above.
CERT_MANAGER_VERSION=v1.11.5 # must equal the cert-manager version in ../certmanager/go.mod
# The commit tag v1.11.5 points at in github.com/cert-manager/cert-manager
# (`git rev-parse v1.11.5^{commit}`; its tree equals the module zip's), stamped as upstream's is.
CERT_MANAGER_COMMIT=b1d501c85d97afd2adde2e86c2b119ac060caece
HELM_VERSION=v3.19.5
# The commit tag v3.19.5 points at in github.com/helm/helm (`git rev-parse v3.19.5^{commit}`):
# the module proxy serves no VCS data, and `helm version` reports it like a release binary does.
HELM_COMMIT=4a19a5b6fb912c5c28a779e73f2e0880d9e239a4
HELM_DOCS_VERSION=v1.14.2
# Prometheus v3.MINOR.PATCH is tagged v0.3MINOR.PATCH for Go modules: v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_VERSION=v0.316.0

# The control-plane set first, then the real node's tools: a cold machine (CI builds everything
# in the background) can run the kwok suites while the real node's tools are still building.
# helm comes before cert-manager.yaml, which it renders; promtool before prometheus, whose build
# reuses most of the packages promtool's compiled into the Go build cache.
control_plane_tools=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok helm helm-docs promtool)
tools=(
	"${control_plane_tools[@]}" kubelet pause
	cert-manager-controller cert-manager-cainjector cert-manager-webhook cert-manager.yaml prometheus
)
case ${1:-all} in
all) selected=("${tools[@]}") ;;
control-plane) selected=("${control_plane_tools[@]}") ;;
*) echo "controlplane: unknown tool set '$1' (all, control-plane)" >&2; exit 2 ;;
esac
# Rough build times in seconds on this project's 2-core machine, loaded, with a cold Go build
# cache, each after the tools before it (which share packages); only for the one-line
# announcement. With a warm build cache (a recipe change that only touches ldflags) each takes
# 1-30 s. Measured: cert-manager-controller 326 s (its Kubernetes v0.26 dependency set is compiled
# by nothing else), cainjector and webhook ~10 s after it, prometheus 120 s after promtool.
# kubelet's is estimated: 109 packages beyond the control plane's (kube-controller-manager: 373).
declare -A estimate=(
	[kube-apiserver]=150 [kube-controller-manager]=100 [kube-scheduler]=50 [etcd]=30
	[kwok]=40 [kubelet]=90 [pause]=5
	[cert-manager-controller]=330 [cert-manager-cainjector]=15 [cert-manager-webhook]=15
	[helm]=60 [helm-docs]=20 [cert-manager.yaml]=1 [promtool]=600 [prometheus]=120
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
certmanager=$(cd "$here/../certmanager" && pwd)
cache_root=${PODSCALER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podscaler-e2e}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { echo "controlplane: $*" >&2; }

# --- recipes: build_<tool> OUT_DIR writes the binary <tool> into OUT_DIR -----------------------
# (<tool> with - and . as _: build_cert_manager_yaml writes cert-manager.yaml)

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
build_kubelet() { build_k8s kubelet "$1"; }

build_etcd() {
	grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$here/go.mod" ||
		{ log "ETCD_VERSION $ETCD_VERSION does not match go.mod"; return 1; }
	(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$1/etcd" ./cmd/etcd)
}

# Standard library only: a static binary the harness can put alone in the pause image.
build_pause() {
	(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$1/pause" ./cmd/pause)
}

# build_cert_manager CMD OUT_DIR: cert-manager's cmd/CMD as OUT_DIR/cert-manager-CMD, from the
# wrapper module (it repeats cert-manager's replace directive), stamped as cert-manager's
# Makefile (v1.11.5) stamps a release: pkg/util.AppVersion = `git describe` of the tag, and
# AppGitCommit.
build_cert_manager() {
	grep -q "github.com/cert-manager/cert-manager $CERT_MANAGER_VERSION" "$certmanager/go.mod" ||
		{ log "CERT_MANAGER_VERSION $CERT_MANAGER_VERSION does not match $certmanager/go.mod"; return 1; }
	local util=github.com/cert-manager/cert-manager/pkg/util
	(cd "$certmanager" && go build -trimpath \
		-ldflags "-s -w -X $util.AppVersion=$CERT_MANAGER_VERSION -X $util.AppGitCommit=$CERT_MANAGER_COMMIT" \
		-o "$2/cert-manager-$1" "github.com/cert-manager/cert-manager/cmd/$1")
}
build_cert_manager_controller() { build_cert_manager controller "$1"; }
build_cert_manager_cainjector() { build_cert_manager cainjector "$1"; }
build_cert_manager_webhook() { build_cert_manager webhook "$1"; }

# cert-manager.yaml as cert-manager's release (make/manifests.mk, v1.11.5) makes its own: the
# chart is assembled first (Chart.yaml from Chart.template.yaml with version and appVersion set,
# templates/crds.yaml from deploy/crds/*.yaml inside `{{- if .Values.installCRDs }}`), then
# rendered with installCRDs=true, creator=static and startupapicheck disabled (its Job runs
# cert-manager's `ctl`, which is not built), and the cert-manager Namespace is put first. The
# chart's image names stay, tagged with appVersion (quay.io/jetstack/cert-manager-controller:
# v1.11.5, …-cainjector, …-webhook); the e2e harness builds local images under those names from
# the binaries above, and IfNotPresent keeps the kubelet from pulling them. (The controller's
# --acme-http01-solver-image names acmesolver, which is not built: the suite issues no ACME.)
# One setting a production install makes and the release manifest does not:
# --enable-certificate-owner-ref, so a Certificate's Secret goes with it and `helm uninstall`
# of a chart that requests certificates leaves no key material behind.
build_cert_manager_yaml() {
	local json src chart=$1/chart
	json=$(cd "$certmanager" && go mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION") ||
		{ log "go mod download of cert-manager $CERT_MANAGER_VERSION failed: $json"; return 1; }
	src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	[ -f "$src/deploy/charts/cert-manager/Chart.template.yaml" ] ||
		{ log "cert-manager $CERT_MANAGER_VERSION has no deploy/charts/cert-manager/Chart.template.yaml in '$src'"; return 1; }
	cp -R "$src/deploy/charts/cert-manager" "$chart"
	chmod -R u+w "$chart"
	sed -e "s/^version: .*/version: $CERT_MANAGER_VERSION/" -e "s/^appVersion: .*/appVersion: $CERT_MANAGER_VERSION/" \
		-e 's/{{IS_PRERELEASE}}/false/' "$chart/Chart.template.yaml" >"$chart/Chart.yaml"
	rm "$chart/Chart.template.yaml"
	{
		echo '{{- if .Values.installCRDs }}'
		bash "$src/hack/concat-yaml.sh" "$src"/deploy/crds/*.yaml # module files are not executable
		echo '{{- end }}'
	} >"$chart/templates/crds.yaml"
	{
		cat "$src/deploy/manifests/namespace.yaml"
		echo "---"
		# helm starts with "---", which the release's sed removes too.
		"${entry[helm]}/helm" template cert-manager "$chart" --namespace cert-manager \
			--kube-version "$KUBERNETES_VERSION" --set installCRDs=true --set creator=static \
			--set startupapicheck.enabled=false --set image.pullPolicy=IfNotPresent \
			--set 'extraArgs={--enable-certificate-owner-ref=true}' \
			--set cainjector.image.pullPolicy=IfNotPresent --set webhook.image.pullPolicy=IfNotPresent |
			sed -e '1{/^---$/d;}'
	} >"$1/cert-manager.yaml"
	rm -rf "$chart"
	check_cert_manager_yaml "$1/cert-manager.yaml"
}

# The rendered manifest holds the six CRDs, no template syntax, and one Deployment per
# component, each with one container running the image named after it at CERT_MANAGER_VERSION.
check_cert_manager_yaml() {
	local crds images want
	crds=$(grep -c '^kind: CustomResourceDefinition$' "$1" || true)
	[ "$crds" -eq 6 ] || { log "$1 holds $crds CRDs, expected 6"; return 1; }
	! grep -q '{{' "$1" || { log "$1 still contains template syntax"; return 1; }
	[ "$(grep -c '^kind: Deployment$' "$1")" -eq 3 ] || { log "$1 does not hold 3 Deployments"; return 1; }
	images=$(sed -n 's/^[[:space:]]*image: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$1" | sort | tr '\n' ' ')
	want=$(for c in cainjector controller webhook; do echo "quay.io/jetstack/cert-manager-$c:$CERT_MANAGER_VERSION"; done | tr '\n' ' ')
	[ "$images" = "$want" ] || { log "$1 runs images '$images', expected '$want'"; return 1; }
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

# The version `--version` reports, as Prometheus' release build (.promu.yml) stamps it.
prometheus_ldflags() {
	local minor=${PROMETHEUS_VERSION#v0.3} patch=${PROMETHEUS_VERSION##*.}
	minor=${minor%%.*}
	echo "-s -w -X github.com/prometheus/common/version.Version=3.$((10#$minor)).$patch"
}

# remove_all_sd leaves out the service-discovery plugins (AWS, Azure, GCE …): `promtool check
# metrics/rules` needs none of them, and they are most of the build. (Kubernetes SD stays:
# promtool imports discovery/kubernetes itself.)
build_promtool() {
	go_install "$1" -tags remove_all_sd -ldflags "$(prometheus_ldflags)" \
		"github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

# The server with Kubernetes service discovery only: remove_all_sd drops every plugin in
# plugins/, enable_kubernetes_sd brings back plugins/plugin_kubernetes.go
# (`//go:build !remove_all_sd || enable_kubernetes_sd`). Without the release's builtinassets tag
# the web UI is not embedded (its pages answer 500); the HTTP API, all the suite asks, is whole.
# promtool keeps its own tags: as it imports discovery/kubernetes anyway, its package set is the
# same with enable_kubernetes_sd (`go list -deps`: 1116 packages both ways), so sharing the tags
# would save no compiling; the 167 packages only the server needs are compiled once either way.
build_prometheus() {
	go_install "$1" -tags remove_all_sd,enable_kubernetes_sd -ldflags "$(prometheus_ldflags)" \
		"github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
}

# --- cache ---------------------------------------------------------------------------------

# builder TOOL: the name of TOOL's build function.
builder() { echo "build_${1//[-.]/_}"; }

# recipe TOOL: everything that decides TOOL's binary, as text.
recipe() {
	local tool=$1
	echo "CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
	declare -f "$(builder "$tool")"
	case $tool in
	kube-* | kubelet) declare -f build_k8s k8s_ldflags; echo "$KUBERNETES_VERSION"; cat "$here/go.mod" "$here/go.sum" ;;
	etcd) echo "$ETCD_VERSION"; cat "$here/go.mod" "$here/go.sum" "$here/cmd/etcd/main.go" ;;
	pause) cat "$here/go.mod" "$here/cmd/pause/main.go" ;;
	cert-manager-*) declare -f build_cert_manager; echo "$CERT_MANAGER_VERSION $CERT_MANAGER_COMMIT"; cat "$certmanager/go.mod" "$certmanager/go.sum" ;;
	# Rendered by helm: helm's entry, named by helm's own recipe, is part of this one.
	cert-manager.yaml) declare -f check_cert_manager_yaml; echo "$CERT_MANAGER_VERSION $KUBERNETES_VERSION ${entry[helm]:?no helm entry yet}" ;;
	kwok) declare -f go_install; echo "$KWOK_VERSION" ;;
	helm) declare -f go_install; echo "$HELM_VERSION $HELM_COMMIT" ;;
	helm-docs) declare -f go_install; echo "$HELM_DOCS_VERSION" ;;
	promtool | prometheus) declare -f go_install prometheus_ldflags; echo "$PROMETHEUS_VERSION" ;;
	*) log "no recipe for $tool"; return 1 ;;
	esac
}

# present PATH: whether PATH is a finished tool: an executable, or for the one manifest
# (cert-manager.yaml) a non-empty file.
present() {
	case $1 in
	*.yaml) [ -s "$1" ] ;;
	*) [ -x "$1" ] ;;
	esac
}

declare -A entry=()
for tool in "${tools[@]}"; do
	key=$(recipe "$tool" | sha256sum | cut -c1-12)
	entry[$tool]="$cache_root/tools/$tool-$key"
done
bin="$cache_root/bin-$(for tool in "${selected[@]}"; do echo "${entry[$tool]}"; done | sha256sum | cut -c1-12)"

complete() {
	local tool
	for tool in "${selected[@]}"; do present "$bin/$tool" || return 1; done
}

if complete; then
	echo "$bin"
	exit 0
fi

missing=()
seconds=0
for tool in "${selected[@]}"; do
	if ! present "${entry[$tool]}/$tool"; then
		missing+=("$tool")
		seconds=$((seconds + estimate[$tool]))
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "building ${missing[*]} from Go modules (once per machine; up to ~$(((seconds + 59) / 60)) min on 2 cores)"
fi

mkdir -p "$cache_root/tools"
staging=$(mktemp -d "$cache_root/tools/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT

for tool in "${missing[@]}"; do
	# One build of a tool at a time across concurrent runs (CI builds all in the background while
	# the chart checks ask for the control-plane set): wait for the other run, then look again.
	exec {lock}>"$cache_root/tools/.$tool.lock"
	flock "$lock"
	if present "${entry[$tool]}/$tool"; then
		exec {lock}>&-
		continue
	fi
	start=$SECONDS
	mkdir "$staging/$tool"
	"$(builder "$tool")" "$staging/$tool" >&2
	present "$staging/$tool/$tool" || { log "building $tool produced no $tool"; exit 1; }
	mv -T "$staging/$tool" "${entry[$tool]}"
	exec {lock}>&-
	log "built $tool in $((SECONDS - start))s"
done

# The bin directory appears whole or not at all: symlinks in a staging directory, then one rename.
mkdir "$staging/bin"
for tool in "${selected[@]}"; do
	ln -s "${entry[$tool]}/$tool" "$staging/bin/$tool"
done
mv -T "$staging/bin" "$bin" 2>/dev/null || true
complete || { log "tools are missing from $bin"; exit 1; }
echo "$bin"
