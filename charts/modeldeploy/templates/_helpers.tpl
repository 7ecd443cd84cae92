{{/* Names and labels shared by every template. */}}

{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "modeldeploy.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's ServiceAccount: the chart's own, or one made elsewhere (IRSA, Workload Identity). */}}
{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
An image reference from {registry, repository, tag, digest}: global.imageRegistry over the image's
registry; the digest over the tag; an empty tag is the default given (the appVersion).
Call with (dict "image" .Values.image "default" .Chart.AppVersion "global" .Values.global).
*/}}
{{- define "modeldeploy.image" -}}
{{- $registry := (.global).imageRegistry | default .image.registry -}}
{{- $name := .image.repository -}}
{{- if $registry -}}{{- $name = printf "%s/%s" (trimSuffix "/" $registry) .image.repository -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $name .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (.image.tag | default .default) -}}
{{- end -}}
{{- end -}}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modeldeploy.labels" -}}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The claim of a pvc:// artifact store, empty for s3://. */}}
{{- define "modeldeploy.storeClaim" -}}
{{- if hasPrefix "pvc://" .Values.artifactStore.uri -}}
{{- trimPrefix "pvc://" .Values.artifactStore.uri | splitList "/" | first -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in the namespaces it watches; the same rules go into the ClusterRole
(whole cluster) or into a Role per watched namespace.
*/}}
{{- define "modeldeploy.namespacedRules" -}}
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch, update]
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/status]
  verbs: [get, patch, update]
# Owner references with blockOwnerDeletion need this where OwnerReferencesPermissionEnforcement runs.
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
{{- if .Values.staging.networkPolicy }}
# Create only: each staging pod's NetworkPolicy, owned by its ModelDeployment (GC deletes it).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create]
{{- end }}
# Read-only: the staging Pod's termination message carries the staging summary.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, create, patch, delete]
# Read-only: KServe's predictor Deployment says when a Standard-mode promotion has rolled out.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get]
- apiGroups: [serving.kserve.io]
  resources: [servingruntimes]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# The shadow ConfigMap of each ModelDeployment, written when a shadow starts or stops; get only
# for its metadata (whose it is: another's under that name is never taken over).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
{{- with .Values.artifactStore.secretName }}
# Only the artifact store's Secret, and only to check that it exists; its data is never kept.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ . | quote }}]
  verbs: [get]
{{- end }}
{{- end -}}

{{/* canary.prometheusAuth.headers as the operator reads them: Name=value,Name=value. */}}
{{- define "modeldeploy.headers" -}}
{{- $pairs := list -}}
{{- range $name, $value := . -}}{{- $pairs = append $pairs (printf "%s=%s" $name $value) -}}{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
