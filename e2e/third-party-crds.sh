#!/usr/bin/env bash
# Prints (on stdout) a cached directory holding the upstream CRDs the Helm chart's objects need:
#
#   cert-manager.crds.yaml                       Certificate, Issuer, ClusterIssuer,
#                                                CertificateRequest, Order, Challenge
#   monitoring.coreos.com_servicemonitors.yaml   ServiceMonitor   (Prometheus Operator)
#   monitoring.coreos.com_podmonitors.yaml       PodMonitor
#   monitoring.coreos.com_prometheusrules.yaml   PrometheusRule
#   SOURCES.txt                                  modules, versions and checksums they came from
#
# Both come from the projects' Go modules, fetched with `go mod download` through the Go module
# proxy (checked against the checksum database like any Go dependency); nothing else is downloaded.
#
# - Prometheus Operator keeps plain CRD manifests in example/prometheus-operator-crd/; they are
#   copied unchanged.
# - cert-manager keeps its CRDs as Helm templates in deploy/charts/cert-manager/templates/crd-*.yaml
#   (wrapped in `{{- if .Values.crds.enabled }}`, labels from _helpers.tpl). Its release tool sets the
#   chart's version and renders the chart to publish cert-manager.crds.yaml; this script does the
#   same: it stamps the pinned version into a copy of the chart and renders only the CRD templates
#   with `helm template --set crds.enabled=true`. (deploy/crds/ holds controller-gen's raw output
#   with identical specs, but its README says it is not meant for installing.)
#
#   e2e/third-party-crds.sh                 # prints the directory; builds it on the first run
#   kubectl apply --server-side -f "$(e2e/third-party-crds.sh)"
#
# Environment: PODSCALER_E2E_CACHE (cache root, default ~/.cache/podscaler-e2e, as for
# e2e/controlplane/build.sh), HELM (helm binary; default: the one e2e/controlplane/build.sh builds).
# Progress goes to stderr. A second run finds the directory and returns at once.
set -euo pipefail

CERT_MANAGER_VERSION=v1.21.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0
# What helm renders cert-manager's chart for (its kubeVersion is ">= 1.22.0-0"); the e2e control plane's.
KUBE_VERSION=1.33.0

CERT_MANAGER_MODULE=github.com/cert-manager/cert-manager
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROMETHEUS_OPERATOR_CRDS=(servicemonitors podmonitors prometheusrules)
CERT_MANAGER_CRDS=(
	acme.cert-manager.io_challenges acme.cert-manager.io_orders
	cert-manager.io_certificaterequests cert-manager.io_certificates
	cert-manager.io_clusterissuers cert-manager.io_issuers
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${PODSCALER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podscaler-e2e}
out="$cache_root/third-party-crds-cert-manager-$CERT_MANAGER_VERSION-prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"

# The directory is moved into place only when complete, so its presence means it is whole.
if [ -f "$out/SOURCES.txt" ]; then
	echo "$out"
	exit 0
fi

log() { echo "third-party-crds: $*" >&2; }
die() {
	log "$*"
	exit 1
}

mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/third-party-crds.XXXXXX")
trap 'chmod -R u+w "$staging" 2>/dev/null; rm -rf "$staging"' EXIT

# module_dir MODULE VERSION: downloads MODULE@VERSION into the module cache and prints its Dir.
# Run outside any module (an empty directory) so no go.mod or go.work takes part.
module_dir() {
	local json dir
	mkdir -p "$staging/gowork"
	json=$(cd "$staging/gowork" && GO111MODULE=on GOWORK=off GOFLAGS=-mod=mod go mod download -json "$1@$2") ||
		die "go mod download $1@$2 failed: $json"
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $1@$2 gave no directory: $json"
	echo "$dir"
	sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" >"$staging/gowork/$(basename "$1").sum"
}

command -v go >/dev/null || die "go is required (the CRDs come from Go modules)"

log "fetching $PROMETHEUS_OPERATOR_MODULE@$PROMETHEUS_OPERATOR_VERSION"
po_dir=$(module_dir "$PROMETHEUS_OPERATOR_MODULE" "$PROMETHEUS_OPERATOR_VERSION")
for crd in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
	src="$po_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml"
	[ -f "$src" ] || die "$src is missing: did the module move its CRDs?"
	cp "$src" "$staging/"
done

log "fetching $CERT_MANAGER_MODULE@$CERT_MANAGER_VERSION"
cm_dir=$(module_dir "$CERT_MANAGER_MODULE" "$CERT_MANAGER_VERSION")
[ -f "$cm_dir/deploy/charts/cert-manager/Chart.yaml" ] || die "$cm_dir has no deploy/charts/cert-manager"
helm=${HELM:-}
if [ -z "$helm" ]; then
	helm="$("$here/controlplane/build.sh" control-plane)/helm"
fi
[ -x "$helm" ] || die "no helm binary at $helm (set HELM)"

# A writable copy of the chart with the version the release tool would stamp into it.
cp -R "$cm_dir/deploy/charts/cert-manager" "$staging/cert-manager-chart"
chmod -R u+w "$staging/cert-manager-chart"
sed -i -e "s/^version: .*/version: $CERT_MANAGER_VERSION/" \
	-e "s/^appVersion: .*/appVersion: $CERT_MANAGER_VERSION/" "$staging/cert-manager-chart/Chart.yaml"
show_only=()
for crd in "${CERT_MANAGER_CRDS[@]}"; do
	[ -f "$staging/cert-manager-chart/templates/crd-$crd.yaml" ] ||
		die "cert-manager chart has no templates/crd-$crd.yaml"
	show_only+=(--show-only "templates/crd-$crd.yaml")
done
log "rendering cert-manager's CRD templates with $("$helm" version --short)"
"$helm" template cert-manager "$staging/cert-manager-chart" --namespace cert-manager \
	--kube-version "$KUBE_VERSION" --set crds.enabled=true "${show_only[@]}" \
	>"$staging/cert-manager.crds.yaml" || die "helm template of cert-manager's CRDs failed"
rm -rf "$staging/cert-manager-chart"

# Sanity: every expected CRD is there once, and no template syntax is left.
check_crds() {
	local file=$1
	shift
	local want=$# got
	got=$(grep -c '^kind: CustomResourceDefinition$' "$file" || true)
	[ "$got" -eq "$want" ] || die "$file holds $got CRDs, expected $want"
	! grep -q '{{' "$file" || die "$file still contains template syntax"
}
check_crds "$staging/cert-manager.crds.yaml" "${CERT_MANAGER_CRDS[@]}"
for crd in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
	check_crds "$staging/monitoring.coreos.com_$crd.yaml" "$crd"
done

{
	echo "# Upstream CRDs for the PodScaler e2e suite, written by e2e/third-party-crds.sh."
	echo "$CERT_MANAGER_MODULE $CERT_MANAGER_VERSION $(cat "$staging/gowork/cert-manager.sum")"
	echo "  cert-manager.crds.yaml: deploy/charts/cert-manager/templates/crd-*.yaml rendered by helm template --set crds.enabled=true"
	echo "$PROMETHEUS_OPERATOR_MODULE $PROMETHEUS_OPERATOR_VERSION $(cat "$staging/gowork/prometheus-operator.sum")"
	for crd in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
		echo "  monitoring.coreos.com_$crd.yaml: example/prometheus-operator-crd/, unchanged"
	done
} >"$staging/SOURCES.txt"
rm -rf "$staging/gowork"

chmod -R a+rX,u+w "$staging"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
log "ready: $out"
echo "$out"
