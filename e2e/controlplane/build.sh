#!/usr/bin/env bash
# Builds the upstream control plane the e2e suite runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok, helm) from the Go module proxy into a cache outside the repository,
# keyed by the pinned versions and this module's go.mod/go.sum. A second run finds the cache and
# returns at once. Prints the bin directory on stdout; progress goes to stderr.
#
#   e2e/controlplane/build.sh            # build (or reuse) and print the bin directory
#   PODSCALER_E2E_CACHE=/some/dir ...    # cache root (default: ~/.cache/podscaler-e2e)
set -euo pipefail

KUBERNETES_VERSION=v1.33.13
ETCD_VERSION=v3.5.21 # must equal the go.etcd.io/etcd/server/v3 version in go.mod
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.19.5

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${PODSCALER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podscaler-e2e}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/cmd/etcd/main.go" |
	{ sha256sum; echo "$KUBERNETES_VERSION $ETCD_VERSION $KWOK_VERSION $HELM_VERSION"; } | sha256sum | cut -c1-12)
bin="$cache_root/k8s-$KUBERNETES_VERSION-$key/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok helm)

complete() {
	local b
	for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if complete; then
	echo "$bin"
	exit 0
fi

log() { echo "controlplane: $*" >&2; }
grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$here/go.mod" ||
	{ log "ETCD_VERSION $ETCD_VERSION does not match go.mod"; exit 1; }

mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$staging"' EXIT

minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
stamp="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
stamp+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"
stamp+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

timed() {
	local what=$1 start=$SECONDS
	shift
	log "building $what"
	"$@" >&2
	log "built $what in $((SECONDS - start))s"
}

cd "$here"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
	timed "$cmd $KUBERNETES_VERSION" go build -trimpath -ldflags "-s -w $stamp" \
		-o "$staging/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
timed "etcd $ETCD_VERSION" go build -trimpath -ldflags "-s -w" -o "$staging/etcd" ./cmd/etcd

# kwok and helm carry no replace directives of their own, so `go install pkg@version` builds them.
export GOBIN="$staging"
timed "kwok $KWOK_VERSION" go install -trimpath \
	-ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
	"sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
timed "helm $HELM_VERSION" go install -trimpath \
	-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
	"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

mkdir -p "$(dirname "$bin")"
rm -rf "$bin"
mv "$staging" "$bin"
trap - EXIT
complete || { log "build finished but binaries are missing from $bin"; exit 1; }
echo "$bin"
