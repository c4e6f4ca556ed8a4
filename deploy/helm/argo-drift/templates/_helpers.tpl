{{/*
Labels Helm adds to every object it renders (besides each object's own, which are those of
deploy/base). Selectors use app.kubernetes.io/name alone, as deploy/base does: argo-drift is
installed once per cluster (its ClusterRoles and admission policy are cluster-wide).
*/}}
{{- define "argo-drift.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The controller's image. */}}
{{- define "argo-drift.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The ConfigMap holding policy.yaml. */}}
{{- define "argo-drift.policyConfigMap" -}}
{{ .Values.policy.existingConfigMap | default "argo-drift-policy" }}
{{- end }}

{{/* The ConfigMap holding notifications.yaml. */}}
{{- define "argo-drift.notificationsConfigMap" -}}
{{ .Values.notifications.existingConfigMap | default "argo-drift-notifications" }}
{{- end }}

{{/* The ServiceAccount subject, in Argo CD's namespace. */}}
{{- define "argo-drift.subject" -}}
- kind: ServiceAccount
  name: argo-drift
  namespace: {{ .Values.argocd.namespace }}
{{- end }}
