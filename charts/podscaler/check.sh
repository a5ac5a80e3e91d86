#!/usr/bin/env bash
# Static checks of the podscaler chart: no cluster needed, a few seconds.
#
#   charts/podscaler/check.sh                 # helm, helm-docs, promtool from e2e/controlplane/build.sh
#   charts/podscaler/check.sh --write-readme  # regenerate README.md (helm-docs), then check
#   HELM=/usr/local/bin/helm HELM_DOCS=/usr/local/bin/helm-docs PROMTOOL=/usr/local/bin/promtool \
#     charts/podscaler/check.sh
#
# 1. `helm lint --strict` with the default values and with every ci/*-values.yaml.
# 2. `helm template` with the defaults and with ci/all-on-values.yaml (every toggle on): the exact
#    number of objects of each kind, and the properties the chart promises (security settings,
#    webhook rules, CA injection, monitoring labels, runbook links, the dashboard's cluster
#    filter) counted in the output.
# 3. Variants: a watched namespace (Role instead of ClusterRole), bring-your-own TLS Secret,
#    an external cert-manager issuer, the webhook turned off, extra args, the cert-manager
#    capability check's modes, renamed cluster label and runbook base.
# 4. Values the schema or the templates must refuse (typos, bad enums, missing TLS inputs).
# 5. The repository around the chart: README.md is what helm-docs makes of README.md.gotmpl and
#    values.yaml, every alert has a section in docs/runbooks.md, Chart.yaml's source is
#    Cargo.toml's repository; the packaged chart holds none of the files .helmignore leaves out.
# 6. The PrometheusRule as Prometheus loads it: its spec.groups written as a rule file,
#    `promtool check rules` on it (defaults, and every toggle on), and `promtool test rules` with
#    the unit tests in tests/*_test.yaml, which must make every alert both fire and stay silent.
# The PrometheusRule expressions and the dashboard queries are checked against the metric names
# the real binaries expose by the e2e suite (e2e/tests/chart.rs), which also installs the chart.
#
# The kube version is passed explicitly to most renders: Chart.yaml requires >=1.33, and what the
# chart promises should not depend on helm's built-in default. One lint and one render go
# without --kube-version: that default (the client-go version helm was built with, stamped by
# build.sh as upstream's Makefile does) must satisfy Chart.yaml, as it does for a user's helm.
set -euo pipefail

write_readme=false
case ${1:-} in
--write-readme) write_readme=true ;;
"") ;;
*) echo "usage: $0 [--write-readme]" >&2; exit 2 ;;
esac

chart=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$chart/../.." && pwd)
if [ -z "${HELM:-}" ] || [ -z "${HELM_DOCS:-}" ] || [ -z "${PROMTOOL:-}" ]; then
	tools=$("$repo/e2e/controlplane/build.sh" control-plane)
	HELM=${HELM:-$tools/helm}
	HELM_DOCS=${HELM_DOCS:-$tools/helm-docs}
	PROMTOOL=${PROMTOOL:-$tools/promtool}
fi
# helm-docs' options for README.md; the same for --write-readme and for the check.
helm_docs=("$HELM_DOCS" --chart-search-root "$chart" --sort-values-order file
	--ignore-non-descriptions --skip-version-footer --log-level warning)
if $write_readme; then
	"${helm_docs[@]}"
fi
KUBE_VERSION=${KUBE_VERSION:-1.33.0}
NAMESPACE=podscaler-system
RELEASE=psc

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0

pass() { checks=$((checks + 1)); }
fail() {
	checks=$((checks + 1))
	failures=$((failures + 1))
	echo "FAIL: $*" >&2
}

# render NAME [helm args...]: renders the chart into $tmp/NAME.yaml or fails the check.
render() {
	local name=$1
	shift
	render_with_default_kube "$name" --kube-version "$KUBE_VERSION" "$@"
}

# render_with_default_kube NAME [helm args...]: render without forcing the kube version.
render_with_default_kube() {
	local name=$1
	shift
	if "$HELM" template "$RELEASE" "$chart" --namespace "$NAMESPACE" \
		"$@" >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
		pass
	else
		fail "helm template ($name) failed: $(cat "$tmp/$name.err")"
		: >"$tmp/$name.yaml"
	fi
}

# expect_kinds NAME "Kind=N ...": exactly these kinds, each exactly N times, nothing else.
expect_kinds() {
	local name=$1 spec=$2 want got
	want=$(tr -s ' \t\n' '\n' <<<"$spec" | grep . | sort)
	got=$(grep -E '^kind: ' "$tmp/$name.yaml" | sed 's/^kind: //' | sort | uniq -c |
		awk '{print $2 "=" $1}' | sort)
	if [ "$want" = "$got" ]; then
		pass
	else
		fail "$name: kinds differ (- expected, + rendered):"
		diff <(echo "$want") <(echo "$got") | grep '^[<>]' | sed 's/^</  -/; s/^>/  +/' >&2 || true
	fi
}

# expect_count NAME N REGEX [what]: REGEX (grep -E) matches exactly N lines of the render.
expect_count() {
	local name=$1 want=$2 regex=$3 what=${4:-$3} got
	got=$(grep -cE -- "$regex" "$tmp/$name.yaml" || true)
	if [ "$got" -eq "$want" ]; then
		pass
	else
		fail "$name: expected $want line(s) matching $what, found $got"
	fi
}

# expect_refused WHAT PATTERN [helm args...]: rendering must fail with PATTERN in the error.
expect_refused() {
	local what=$1 pattern=$2
	shift 2
	if "$HELM" template "$RELEASE" "$chart" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" \
		"$@" >/dev/null 2>"$tmp/refused.err"; then
		fail "$what: rendered, but must be refused"
	elif grep -qE -- "$pattern" "$tmp/refused.err"; then
		pass
	else
		fail "$what: refused, but the message lacks /$pattern/: $(cat "$tmp/refused.err")"
	fi
}

echo "check.sh: $("$HELM" version --short), $("$PROMTOOL" --version | head -1), kube-version $KUBE_VERSION" >&2

# expect_same WHAT FILE [command...]: the command succeeds and its stdout is FILE's content.
expect_same() {
	local what=$1 file=$2
	shift 2
	if ! "$@" >"$tmp/same.out" 2>"$tmp/same.err"; then
		fail "$what: $* failed: $(cat "$tmp/same.err")"
	elif diff -u "$file" "$tmp/same.out" >"$tmp/same.diff"; then
		pass
	else
		fail "$what (- checked in, + generated):"
		sed 's/^/  /' "$tmp/same.diff" >&2
	fi
}

# --- 1. lint -------------------------------------------------------------------------------
lint() {
	lint_with_default_kube --kube-version "$KUBE_VERSION" "$@"
}
lint_with_default_kube() {
	if "$HELM" lint --strict "$chart" --namespace "$NAMESPACE" "$@" \
		>"$tmp/lint.out" 2>&1; then
		pass
	else
		fail "helm lint --strict $*:"
		sed 's/^/  /' "$tmp/lint.out" >&2
	fi
}
lint
for values in "$chart"/ci/*-values.yaml; do
	lint --values "$values"
done
lint_with_default_kube

# --- 2a. default values --------------------------------------------------------------------
render default
# Without --kube-version: helm's built-in default (stamped by build.sh) satisfies kubeVersion.
render_with_default_kube default-kube
expect_count default-kube 1 '^kind: ValidatingWebhookConfiguration$'
expect_kinds default "ServiceAccount=2 ClusterRole=4 ClusterRoleBinding=3 Role=1 RoleBinding=1 Service=3 Deployment=2
	PodDisruptionBudget=2 Issuer=2 Certificate=2 MutatingWebhookConfiguration=1 ValidatingWebhookConfiguration=1"
# Hardening of both Deployments.
expect_count default 2 '^ +readOnlyRootFilesystem: true$'
expect_count default 2 '^ +allowPrivilegeEscalation: false$'
expect_count default 4 '^ +runAsNonRoot: true$' 'runAsNonRoot (pod + container, x2)'
expect_count default 4 '^ +type: RuntimeDefault$' 'seccomp RuntimeDefault (pod + container, x2)'
expect_count default 2 '^ +- ALL$' 'capabilities drop ALL'
expect_count default 2 '^ +path: /healthz$'
expect_count default 2 '^ +path: /readyz$'
expect_count default 8 '^ +(cpu|memory): ' 'cpu/memory requests and limits (x2)'
expect_count default 0 '^ +type: Recreate$' 'no Recreate: leader election lets replicas overlap'
expect_count default 2 '^ +type: RollingUpdate$' 'RollingUpdate (operator + webhook)'
expect_count default 2 '^  replicas: 2$' 'operator and webhook replicas 2'
# Leader election: on, on a Lease in the release namespace, with client-go's timing.
expect_count default 1 '^ +- --leader-elect$'
expect_count default 1 "^ +- --leader-election-id=$RELEASE-podscaler-operator-leader\$"
expect_count default 1 "^ +- --leader-election-namespace=$NAMESPACE\$"
expect_count default 1 '^ +- --leader-election-lease-duration=15s$'
expect_count default 1 '^ +- --leader-election-renew-deadline=10s$'
expect_count default 1 '^ +- --leader-election-retry-period=2s$'
expect_count default 1 "^ +resourceNames: \[\"$RELEASE-podscaler-operator-leader\"\]\$" 'the Lease by name'
expect_count default 1 '^ +verbs: \["get", "update"\]$' 'Lease verbs by name'
expect_count default 2 '^ +resources: \["leases"\]$' 'the Lease rules (create; get, update by name)'
expect_count default 1 '^ +image: "ghcr.io/example/podscaler/operator:0\.1\.0"$'
expect_count default 1 '^ +image: "ghcr.io/example/podscaler/webhook:0\.1\.0"$'
expect_count default 1 '^ +- --cert-dir=/tmp/k8s-webhook-server/serving-certs$'
expect_count default 1 '^ +mountPath: /tmp/k8s-webhook-server/serving-certs$'
expect_count default 0 '^ +- --http2$'
# Services: webhook 443 -> named port "webhook" (9443).
expect_count default 3 '^ +port: 443$' 'port 443 (Service + both clientConfigs)'
expect_count default 1 '^ +containerPort: 9443$'
# Webhook configurations.
expect_count default 2 "^    cert-manager.io/inject-ca-from: $NAMESPACE/$RELEASE-podscaler-webhook-serving\$"
expect_count default 2 '^ +sideEffects: None$'
expect_count default 2 '^ +admissionReviewVersions: \["v1"\]$'
expect_count default 2 '^ +operations: \["CREATE", "UPDATE"\]$'
expect_count default 2 '^        resources: \["podscalers"\]$' 'webhook rules on podscalers'
expect_count default 1 '^        resources: \["podscalers/scale"\]$' 'validation of the scale subresource'
expect_count default 1 '^ +operations: \["UPDATE"\]$' 'scale subresource: UPDATE only'
expect_count default 2 '^ +failurePolicy: Fail$'
expect_count default 2 '^ +timeoutSeconds: 10$'
expect_count default 2 '^ +operator: NotIn$'
expect_count default 2 "^ +- $NAMESPACE\$" 'the release namespace excluded (x2)'
expect_count default 1 '^ +path: /mutate-scaling-example-com-v1-podscaler$'
expect_count default 1 '^ +path: /validate-scaling-example-com-v1-podscaler$'
expect_count default 0 '^ +caBundle:'
# The serving certificate names the webhook Service.
expect_count default 1 "^ +- $RELEASE-podscaler-webhook.$NAMESPACE.svc\$"
expect_count default 1 "^ +- $RELEASE-podscaler-webhook.$NAMESPACE.svc.cluster.local\$"
expect_count default 1 '^ +isCA: true$'
# Least privilege: no wildcard anywhere, and exactly the verbs listed in templates/rbac.yaml.
expect_count default 0 '"\*"' 'a "*" wildcard'
expect_count default 1 '^ +verbs: \["list", "watch", "create", "delete"\]$' 'pods verbs'
expect_count default 2 '^ +verbs: \["list", "watch"\]$' 'podscalers read (operator + webhook)'
expect_count default 1 '^ +verbs: \["create", "patch"\]$' 'events.k8s.io verbs'
expect_count default 0 'prometheus.io/scrape'
# Secure metrics (metrics.secure, on by default): both binaries, and exactly the review verbs.
expect_count default 2 '^ +- --metrics-secure=true$'
expect_count default 1 '^ +resources: \["tokenreviews"\]$'
expect_count default 1 '^ +resources: \["subjectaccessreviews"\]$'
expect_count default 3 '^ +verbs: \["create"\]$' 'create alone: leases, tokenreviews, subjectaccessreviews'

# --- 2b. every toggle on (the file the e2e suite renders) ----------------------------------------
render all-on --values "$chart/ci/all-on-values.yaml"
expect_kinds all-on "ServiceAccount=2 ClusterRole=4 ClusterRoleBinding=4 Role=1 RoleBinding=1 Service=3 Deployment=2
	PodDisruptionBudget=2 Issuer=2 Certificate=2 MutatingWebhookConfiguration=1 ValidatingWebhookConfiguration=1
	ServiceMonitor=1 PodMonitor=1 PrometheusRule=1 ConfigMap=1"
expect_count all-on 3 '^    release: prometheus$' 'release: prometheus on ServiceMonitor, PodMonitor, PrometheusRule'
expect_count all-on 1 '^    grafana_dashboard: "1"$'
expect_count all-on 2 '^ +prometheus.io/scrape: "true"$'
expect_count all-on 2 '^ +prometheus.io/scheme: https$'
expect_count all-on 2 '^ +scheme: https$' 'ServiceMonitor and PodMonitor over HTTPS'
expect_count all-on 1 '^ +bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token$' 'ServiceMonitor: Prometheus token'
expect_count all-on 1 '^ +name: prometheus-token$' 'PodMonitor: the token Secret'
expect_count all-on 2 '^ +insecureSkipVerify: true$'
expect_count all-on 2 '^ +honorLabels: true$'
expect_count all-on 1 '^ +- --http2$'
expect_count all-on 8 '^ +- alert: PodScaler' 'alerts'
expect_count all-on 8 '^ +summary: [^ ]' 'alert summaries'
expect_count all-on 8 '^ +description: [^ ]' 'alert descriptions'
expect_count all-on 8 '^ +runbook_url: https://example\.com/podscaler/blob/main/docs/runbooks\.md#podscaler[a-z]+$' \
	'runbook_url into the repository docs/runbooks.md'
# The dashboard: a Cluster variable (All by default), and every query filtered by it.
expect_count all-on 1 '^ +"name": "cluster",$' 'the dashboard Cluster variable'
expect_count all-on 37 '^ +"expr": ' 'dashboard queries'
expect_count all-on 37 '^ +"expr": ".*\{cluster=~\\"\$cluster\\",' 'dashboard queries filtered by cluster'
expect_count all-on 3 '^ +"query": "label_values\([a-z_]+\{cluster=~\\"\$cluster\\",' 'dashboard variables filtered by cluster'
expect_count all-on 1 "^ +replacement: $RELEASE-podscaler-operator-metrics\$" 'PodMonitor job relabeling (operator)'
expect_count all-on 1 "^ +replacement: $RELEASE-podscaler-webhook-metrics\$" 'PodMonitor job relabeling (webhook)'
expect_count all-on 1 '^ +name: prometheus-kube-prometheus-prometheus$' 'metrics-reader binding subject'

# --- 3. variants --------------------------------------------------------------------------
render namespaced --set operator.watchNamespace=team-a
expect_kinds namespaced "ServiceAccount=2 ClusterRole=3 ClusterRoleBinding=2 Role=2 RoleBinding=2 Service=3
	Deployment=2 PodDisruptionBudget=2 Issuer=2 Certificate=2 MutatingWebhookConfiguration=1
	ValidatingWebhookConfiguration=1"
expect_count namespaced 2 '^  namespace: team-a$' 'Role and RoleBinding in the watched namespace'
expect_count namespaced 1 "^ +- --leader-election-namespace=$NAMESPACE\$" 'the Lease stays in the release namespace'
expect_count namespaced 1 '^ +- --namespace=team-a$'

render own-secret --set webhook.tls.mode=secret --set webhook.tls.secret.name=my-tls \
	--set webhook.tls.secret.caBundle=Q0E=
expect_kinds own-secret "ServiceAccount=2 ClusterRole=4 ClusterRoleBinding=3 Role=1 RoleBinding=1 Service=3 Deployment=2
	PodDisruptionBudget=2 MutatingWebhookConfiguration=1 ValidatingWebhookConfiguration=1"
expect_count own-secret 2 '^ +caBundle: Q0E=$'
expect_count own-secret 0 'inject-ca-from'
expect_count own-secret 1 '^ +secretName: my-tls$'

render cluster-issuer --set webhook.tls.certManager.issuerRef.kind=ClusterIssuer \
	--set webhook.tls.certManager.issuerRef.name=corp-ca --set webhook.tls.certManager.issuerRef.group=cert-manager.io
expect_kinds cluster-issuer "ServiceAccount=2 ClusterRole=4 ClusterRoleBinding=3 Role=1 RoleBinding=1 Service=3 Deployment=2
	PodDisruptionBudget=2 Certificate=1 MutatingWebhookConfiguration=1 ValidatingWebhookConfiguration=1"
expect_count cluster-issuer 1 '^ +kind: ClusterIssuer$'
expect_count cluster-issuer 2 'inject-ca-from'

render no-webhook --set webhook.enabled=false --set monitoring.serviceMonitor.enabled=true \
	--set monitoring.prometheusRule.enabled=true
expect_kinds no-webhook "ServiceAccount=1 ClusterRole=3 ClusterRoleBinding=2 Role=1 RoleBinding=1 Service=1 Deployment=1
	PodDisruptionBudget=1 ServiceMonitor=1 PrometheusRule=1"
expect_count no-webhook 5 '^ +- alert: PodScaler' 'alerts without the webhook ones'

# Renamed cluster label: every matcher and the variable's label_values() follow; nothing else.
render cluster-label --values "$chart/ci/all-on-values.yaml" --set monitoring.grafanaDashboard.clusterLabel=k8s_cluster
expect_count cluster-label 37 '^ +"expr": ".*\{k8s_cluster=~\\"\$cluster\\",' 'queries filtered by k8s_cluster'
expect_count cluster-label 1 '^ +"query": "label_values\(.*\}, k8s_cluster\)",$' 'the Cluster variable lists k8s_cluster'
expect_count cluster-label 0 '[^_]cluster=~' 'a matcher on the default cluster label'
render runbooks --set monitoring.prometheusRule.enabled=true \
	--set monitoring.prometheusRule.runbookBaseURL=https://wiki.example.org/podscaler
expect_count runbooks 8 '^ +runbook_url: https://wiki\.example\.org/podscaler#podscaler[a-z]+$' 'runbook_url on the given base'

# cert-manager capability check (webhook.tls.certManager.capabilityCheck). Offline, helm's
# capabilities never include cert-manager: `auto` (above: every render without it) must not
# refuse; `always` judges --api-versions; `never` and secret mode never refuse. The refusal
# when helm talks to a cluster without cert-manager is the e2e suite's (e2e/tests/chart.rs).
render capability-always --set webhook.tls.certManager.capabilityCheck=always --api-versions cert-manager.io/v1/Certificate
expect_count capability-always 2 '^kind: Certificate$'
render capability-always-group --set webhook.tls.certManager.capabilityCheck=always --api-versions cert-manager.io/v1
render capability-never --set webhook.tls.certManager.capabilityCheck=never
render capability-secret --set webhook.tls.certManager.capabilityCheck=always --set webhook.tls.mode=secret \
	--set webhook.tls.secret.name=my-tls --set webhook.tls.secret.caBundle=Q0E=
render capability-no-webhook --set webhook.tls.certManager.capabilityCheck=always --set webhook.enabled=false

# Plain-HTTP metrics: no review rights, plain scrapes.
render plain-metrics --values "$chart/ci/all-on-values.yaml" --set metrics.secure=false
expect_count plain-metrics 0 'tokenreviews|subjectaccessreviews|bearerTokenFile|insecureSkipVerify'
expect_count plain-metrics 2 '^ +- --metrics-secure=false$'
expect_count plain-metrics 2 '^ +scheme: http$'
expect_count plain-metrics 2 '^ +prometheus.io/scheme: http$'

render single-webhook --set webhook.replicas=1
expect_count single-webhook 1 '^kind: PodDisruptionBudget$' 'only the operator PDB: none that would block drains'

# One operator without leader election: Recreate, no Lease RBAC, no PDB, no flags.
render single-operator --set operator.replicas=1 --set operator.leaderElection.enabled=false
expect_count single-operator 1 '^ +type: Recreate$' 'operator strategy Recreate'
expect_count single-operator 0 'leader-elect' 'leader election flags'
expect_count single-operator 0 'coordination.k8s.io' 'Lease RBAC'
expect_count single-operator 1 '^kind: PodDisruptionBudget$' 'only the webhook PDB'
render lease-name --set operator.leaderElection.leaseName=my-lease
expect_count lease-name 1 '^ +- --leader-election-id=my-lease$'
expect_count lease-name 1 '^ +resourceNames: \["my-lease"\]$'

render hooks --set 'operator.extraArgs[0]=--example-flag' --set 'webhook.extraArgs[0]=--example-flag' \
	--set operator.image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000 \
	--set monitoring.prometheusRule.enabled=true --set 'monitoring.prometheusRule.disabledAlerts[0]=PodScalerPodsUnavailable'
expect_count hooks 2 '^ +- --example-flag$'
expect_count hooks 1 '^ +image: "ghcr.io/example/podscaler/operator@sha256:0{64}"$'
expect_count hooks 7 '^ +- alert: PodScaler' 'alerts minus the disabled one'

render long-name --set fullnameOverride=a-release-name-that-is-much-too-long-for-kubernetes-names-reall
if awk '/^  name: /{ if (length($2) > 63) bad=1 } END { exit !bad }' "$tmp/long-name.yaml"; then
	fail "long-name: an object name longer than 63 characters"
else
	pass
fi

# --- 4. refused values --------------------------------------------------------------------
expect_refused "a typo in a key" "additional properties 'imge' not allowed" --set operator.imge.tag=x
expect_refused "an unknown top-level key" "additional properties 'replicaCount' not allowed" --set replicaCount=3
expect_refused "a PodMonitor with secure metrics and no token" "monitoring.podMonitor.authorization" \
	--set monitoring.podMonitor.enabled=true
expect_refused "a bad failurePolicy" "failurePolicy" --set webhook.failurePolicy=Sometimes
expect_refused "a webhook timeout over 30s" "timeoutSeconds" --set webhook.timeoutSeconds=31
expect_refused "a --max-count over the CRD's hard maximum" "maxCount" --set webhook.maxCount=100001
expect_refused "a duration without unit" "requeueAfter" --set operator.requeueAfter=15
expect_refused "an unknown alert name" "disabledAlerts" --set 'monitoring.prometheusRule.disabledAlerts[0]=NoSuchAlert'
expect_refused "secret mode without a Secret" "webhook.tls.secret.name" --set webhook.tls.mode=secret
expect_refused "secret mode without a caBundle" "webhook.tls.secret.caBundle" \
	--set webhook.tls.mode=secret --set webhook.tls.secret.name=my-tls
expect_refused "a PDB that can never be satisfied" "minAvailable" --set webhook.podDisruptionBudget.minAvailable=2
expect_refused "an operator PDB that can never be satisfied" "operator.podDisruptionBudget.minAvailable" \
	--set operator.podDisruptionBudget.minAvailable=2
expect_refused "two operators without leader election" "operator.leaderElection.enabled" \
	--set operator.leaderElection.enabled=false
expect_refused "a lease duration without unit" "leaseDuration" --set operator.leaderElection.leaseDuration=15
expect_refused "a Kubernetes older than the chart supports" "kubeVersion" --kube-version 1.32.0
expect_refused "capabilityCheck=always without cert-manager" \
	"needs cert-manager.*install cert-manager first.*webhook\.tls\.mode=secret.*capabilityCheck=never" \
	--set webhook.tls.certManager.capabilityCheck=always
expect_refused "an unknown capabilityCheck" "capabilityCheck" --set webhook.tls.certManager.capabilityCheck=sometimes
expect_refused "a cluster label that is no Prometheus label" "clusterLabel" \
	--set monitoring.grafanaDashboard.clusterLabel=k8s-cluster
expect_refused "a runbook base that is no URL" "runbookBaseURL" \
	--set monitoring.prometheusRule.runbookBaseURL=docs/runbooks.md

# --- 5. the repository around the chart -----------------------------------------------------
# README.md is helm-docs' output (values table from values.yaml's `# --` comments).
expect_same "README.md is out of date: run charts/podscaler/check.sh --write-readme" \
	"$chart/README.md" "${helm_docs[@]}" --dry-run
# helm-docs silently drops a value whose comment it cannot parse (" -- " inside the text):
# one table row per `# --` comment.
rows=$(sed -n '/^## Values$/,$p' "$chart/README.md" | grep -c '^| [a-zA-Z]' || true)
documented=$(grep -c '^ *# -- ' "$chart/values.yaml" || true)
if [ "$((rows - 1))" -eq "$documented" ]; then
	pass
else
	fail "README.md's values table has $((rows - 1)) rows, values.yaml documents $documented values"
fi
# Every alert links to a section of docs/runbooks.md headed by its name.
for alert in $(grep -oE 'alert: PodScaler[A-Za-z]+' "$tmp/all-on.yaml" | sed 's/^alert: //'); do
	if grep -qx "## $alert" "$repo/docs/runbooks.md"; then
		pass
	else
		fail "docs/runbooks.md has no section '## $alert'"
	fi
done
# The runbook links are built from Chart.yaml's first source: it must be the repository.
source=$(sed -n '/^sources:/{n;s/^ *- *//p}' "$chart/Chart.yaml")
repository=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$repo/Cargo.toml")
if [ -n "$source" ] && [ "$source" = "$repository" ]; then
	pass
else
	fail "Chart.yaml's first source ($source) is not Cargo.toml's repository ($repository)"
fi

# The packaged chart is the chart alone: no static checks, no unit tests, no README template.
if "$HELM" package "$chart" --destination "$tmp/package" >"$tmp/package.out" 2>&1; then
	packaged=$(tar -tzf "$tmp"/package/podscaler-*.tgz)
	for ignored in check.sh README.md.gotmpl tests/; do
		if grep -q "^podscaler/$ignored" <<<"$packaged"; then
			fail "helm package includes $ignored: add it to .helmignore"
		else
			pass
		fi
	done
else
	fail "helm package failed: $(cat "$tmp/package.out")"
fi

# --- 6. the PrometheusRule under promtool ---------------------------------------------------
# A PrometheusRule's spec is a Prometheus rule file as it stands (groups: [{name, rules}]), so the
# rule file is that spec cut out of the render. The unit tests in tests/ name it
# podscaler-rules.yaml, relative to themselves: promtool runs on copies next to the rendered file.
promtool_dir=$tmp/promtool
mkdir -p "$promtool_dir"
rule_file=$promtool_dir/podscaler-rules.yaml

# cut_rule_file NAME OUT [helm args...]: renders the PrometheusRule alone (release $RELEASE in
# $NAMESPACE) and writes its spec to OUT, or fails the check.
cut_rule_file() {
	local name=$1 out=$2
	shift 2
	render "$name" --show-only templates/prometheusrule.yaml "$@"
	expect_count "$name" 1 '^kind: PrometheusRule$'
	# spec is the object's last key (templates/prometheusrule.yaml): every line after `spec:`
	# must be indented under it; anything else means the cut would be wrong.
	if awk '
		spec && /^  / { print substr($0, 3); next }
		spec { bad = 1 }
		/^spec:$/ { spec = 1 }
		END { exit !(spec && !bad) }' "$tmp/$name.yaml" >"$out"; then
		pass
	else
		fail "$name: no spec at the end of the PrometheusRule to cut a rule file from"
	fi
}

# check_rules FILE: `promtool check rules`, lint warnings (duplicate rules) fatal too.
check_rules() {
	if "$PROMTOOL" check rules --lint-fatal "$1" >"$tmp/check-rules.out" 2>&1; then
		pass
	else
		fail "promtool check rules ($(basename "$1")):"
		sed 's/^/  /' "$tmp/check-rules.out" >&2
	fi
}

# The defaults a user gets, with the rule on: what the unit tests expect (thresholds, for:,
# job names, annotations).
cut_rule_file rules-default "$rule_file" --set monitoring.prometheusRule.enabled=true
check_rules "$rule_file"
# Every toggle on: extra alert labels merged into each rule must still load.
cut_rule_file rules-all-on "$tmp/all-on-rules.yaml" --values "$chart/ci/all-on-values.yaml"
check_rules "$tmp/all-on-rules.yaml"

cp "$chart"/tests/*_test.yaml "$promtool_dir/"
if (cd "$promtool_dir" && "$PROMTOOL" test rules ./*_test.yaml) >"$tmp/test-rules.out" 2>&1; then
	pass
else
	fail "promtool test rules (charts/podscaler/tests/*_test.yaml against the rendered rules):"
	sed 's/^/  /' "$tmp/test-rules.out" >&2
fi

# Every alert has a test where it fires (exp_alerts not empty) and one where it stays silent
# (exp_alerts: [] at some eval_time: healthy series, or a condition not yet held for its `for:`),
# so an alert added to the chart cannot go untested.
awk '
	/^ *alertname: / { alert = $2 } # each alert_rule_test names its alert before exp_alerts
	/^ *exp_alerts: *\[\] *$/ { print alert, "silent"; next }
	/^ *exp_alerts:/ { print alert, "fires" }' "$chart"/tests/*_test.yaml | sort -u >"$tmp/tested"
for alert in $(sed -n 's/^ *- alert: //p' "$rule_file"); do
	for outcome in fires silent; do
		if grep -qx "$alert $outcome" "$tmp/tested"; then
			pass
		else
			fail "charts/podscaler/tests: no test where $alert ${outcome/silent/stays silent}"
		fi
	done
done

if [ "$failures" -ne 0 ]; then
	echo "check.sh: $failures of $checks checks failed" >&2
	exit 1
fi
echo "check.sh: all $checks checks passed" >&2
