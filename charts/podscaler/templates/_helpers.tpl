{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "podscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Resource-name prefix: fullnameOverride, else the release name when it already contains the chart
name, else "<release>-<chart>". Truncated to 63 characters (the DNS label limit).
*/}}
{{- define "podscaler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<fullname>-<suffix>", kept within 63 characters. Call with (list $ "suffix").
*/}}
{{- define "podscaler.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "podscaler.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"name-version" as used by the helm.sh/chart label.
*/}}
{{- define "podscaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "podscaler.labels" -}}
helm.sh/chart: {{ include "podscaler.chart" . }}
{{ include "podscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podscaler
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels shared by every component of one release.
*/}}
{{- define "podscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component's objects. Call with (list $ "operator").
*/}}
{{- define "podscaler.componentLabels" -}}
{{ include "podscaler.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Selector labels of one component's pods. Call with (list $ "operator").
*/}}
{{- define "podscaler.componentSelectorLabels" -}}
{{ include "podscaler.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
ServiceAccount names.
*/}}
{{- define "podscaler.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "podscaler.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's leader election Lease.
*/}}
{{- define "podscaler.operator.leaseName" -}}
{{- default (include "podscaler.componentName" (list . "operator-leader")) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{- define "podscaler.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "podscaler.componentName" (list . "webhook")) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- required "webhook.serviceAccount.name is required when webhook.serviceAccount.create is false" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference from an image block: repository@digest, else repository:tag (tag defaults to
the chart's appVersion). Call with (list $ .Values.operator.image).
*/}}
{{- define "podscaler.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
Webhook Service name, serving-certificate objects and their Secret.
*/}}
{{- define "podscaler.webhook.serviceName" -}}
{{- include "podscaler.componentName" (list . "webhook") }}
{{- end }}

{{- define "podscaler.webhook.certificateName" -}}
{{- include "podscaler.componentName" (list . "webhook-serving") }}
{{- end }}

{{- define "podscaler.webhook.tlsSecretName" -}}
{{- if eq .Values.webhook.tls.mode "secret" }}
{{- required "webhook.tls.secret.name is required when webhook.tls.mode is secret" .Values.webhook.tls.secret.name }}
{{- else }}
{{- include "podscaler.componentName" (list . "webhook-tls") }}
{{- end }}
{{- end }}

{{/*
cainjector's annotation on the webhook configurations (certManager mode only; in secret mode the
configurations carry webhook.tls.secret.caBundle instead).
*/}}
{{- define "podscaler.webhook.caAnnotations" -}}
{{- if eq .Values.webhook.tls.mode "certManager" }}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "podscaler.webhook.certificateName" .) }}
{{- end }}
{{- end }}

{{/*
Prometheus job labels (the metrics Service names; the PodMonitor relabels to the same values).
*/}}
{{- define "podscaler.operator.metricsName" -}}
{{- include "podscaler.componentName" (list . "operator-metrics") }}
{{- end }}

{{- define "podscaler.webhook.metricsName" -}}
{{- include "podscaler.componentName" (list . "webhook-metrics") }}
{{- end }}

{{- define "podscaler.operator.job" -}}
{{- default (include "podscaler.operator.metricsName" .) .Values.monitoring.prometheusRule.operatorJob }}
{{- end }}

{{- define "podscaler.webhook.job" -}}
{{- default (include "podscaler.webhook.metricsName" .) .Values.monitoring.prometheusRule.webhookJob }}
{{- end }}

{{/*
Label that marks the metrics Services, so the ServiceMonitor selects them and nothing else.
*/}}
{{- define "podscaler.metricsServiceLabel" -}}
scaling.example.com/metrics-service: "true"
{{- end }}

{{/*
Labels of monitoring.coreos.com objects: chart labels + monitoring.additionalLabels + the
object's own additionalLabels. Call with (list $ .Values.monitoring.serviceMonitor).
*/}}
{{- define "podscaler.monitoringLabels" -}}
{{- $root := index . 0 }}
{{- $own := index . 1 }}
{{- include "podscaler.labels" $root }}
{{- $extra := merge (deepCopy ($own.additionalLabels | default dict)) ($root.Values.monitoring.additionalLabels | default dict) }}
{{- with $extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
prometheus.io/* annotations for annotation-based scraping. Call with (list $ port).
*/}}
{{- define "podscaler.scrapeAnnotations" -}}
{{- $root := index . 0 }}
{{- if $root.Values.monitoring.podAnnotations.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: /metrics
prometheus.io/scheme: {{ ternary "https" "http" $root.Values.metrics.secure }}
{{- end }}
{{- end }}

{{/*
"true" when the API server helm renders for serves cert-manager.io/v1 Certificates (`helm
template` without a cluster: only when --api-versions says so), else "".
*/}}
{{- define "podscaler.certManagerServed" -}}
{{- if or (.Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate") (.Capabilities.APIVersions.Has "cert-manager.io/v1") }}true{{ end }}
{{- end }}

{{/*
"true" when helm renders against a real cluster (install, upgrade, --dry-run=server): then
`lookup` returns the kube-system Namespace, which every cluster has. Offline (`helm template`,
`helm lint`, --dry-run=client) lookup returns nothing and the capabilities are helm's built-in
defaults, which never include cert-manager, so they say nothing about the target cluster.
*/}}
{{- define "podscaler.talksToCluster" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" }}true{{ end }}
{{- end }}

{{- define "podscaler.certManagerMissing" -}}
webhook.tls.mode=certManager needs cert-manager, but the cluster does not serve its API (cert-manager.io/v1 Certificate; offline: not in helm's --api-versions). Either install cert-manager first (https://cert-manager.io/docs/installation/) and retry; or bring your own TLS Secret: --set webhook.tls.mode=secret --set webhook.tls.secret.name=<kubernetes.io/tls Secret in {{ .Release.Namespace }}> --set webhook.tls.secret.caBundle=<base64 PEM of its CA>; or install without the admission webhook: --set webhook.enabled=false. If cert-manager is being installed in the same step, set webhook.tls.certManager.capabilityCheck=never.
{{- end }}

{{/*
The project's repository: Chart.yaml's first `sources` entry (check.sh keeps it equal to
Cargo.toml's workspace `repository`).
*/}}
{{- define "podscaler.repository" -}}
{{- required "Chart.yaml needs a sources entry (the repository URL)" (first (.Chart.Sources | default list)) | trimSuffix "/" }}
{{- end }}
