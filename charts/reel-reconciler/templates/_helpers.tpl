{{- define "reel-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "reel-reconciler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "reel-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reel-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "reel-reconciler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "reel-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "reel-reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "reel-reconciler.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "reel-reconciler.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Is a Prometheus Operator kind wanted? "auto" follows the cluster's API, true forces. */}}
{{- define "reel-reconciler.promOperator" -}}
{{- $setting := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $ctx := index . 2 -}}
{{- if or (eq (toString $setting) "true") (and (eq (toString $setting) "auto") ($ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind))) -}}
true
{{- end -}}
{{- end -}}

{{/* Where the key file of gcpCredentials.existingSecret is mounted. */}}
{{- define "reel-reconciler.gcpCredentialsDir" -}}
/var/run/secrets/google
{{- end -}}

{{- define "reel-reconciler.peering" -}}
{{- if gt (int .Values.replicaCount) 1 -}}true{{- end -}}
{{- end -}}

{{/* The namespace of the dashboard ConfigMap: Grafana's sidecar may watch only its own. */}}
{{- define "reel-reconciler.dashboardNamespace" -}}
{{- default .Release.Namespace .Values.dashboard.namespace -}}
{{- end -}}

{{/*
checkov's CKV_K8S_21 flags a ServiceAccount, Deployment, Service or ConfigMap in the
namespace "default". The namespace is the release's (helm -n), not the chart's, and
`checkov -d --framework helm` renders without -n. Takes a namespace; emits the skip
annotation only for "default".
*/}}
{{- define "reel-reconciler.defaultNamespaceSkip" -}}
{{- if eq . "default" -}}
checkov.io/skip-namespace: CKV_K8S_21=the namespace is chosen at install (helm -n), not by the chart
{{- end -}}
{{- end -}}

{{/*
metadata.annotations from (list namespace map): the map plus the CKV_K8S_21 skip for the
"default" namespace; nothing when both are empty. Use it with `with`, then nindent 2.
*/}}
{{- define "reel-reconciler.metadataAnnotations" -}}
{{- $skip := include "reel-reconciler.defaultNamespaceSkip" (index . 0) | fromYaml -}}
{{- with merge $skip (index . 1 | default dict) -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The uninstall hook's pods: not the operator's selector, so that neither the Service,
the PodDisruptionBudget nor the operator's NetworkPolicy picks them. */}}
{{- define "reel-reconciler.uninstallSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-uninstall" (include "reel-reconciler.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "reel-reconciler.uninstallLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "reel-reconciler.uninstallSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: uninstall-hook
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A pre-delete hook object of the given weight, deleted once every hook succeeded (a
failed one stays for `kubectl describe`, until the next attempt replaces it). */}}
{{- define "reel-reconciler.uninstallHook" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}
