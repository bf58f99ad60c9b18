{{/* Names, labels and the environment every AdMesh container shares. */}}

{{- define "admesh.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The binary, Service name suffix and listen key of each service. */}}
{{- define "admesh.serviceTable" -}}
edge: {binary: edge, listenKey: ADMESH_EDGE__LISTEN, grpc: false}
adServer: {binary: ad-server, listenKey: ADMESH_AD_SERVER__LISTEN, grpc: true}
bidEngine: {binary: bid-engine, listenKey: ADMESH_BID_ENGINE__LISTEN, grpc: true}
queueService: {binary: queue-service, listenKey: ADMESH_QUEUE__LISTEN, grpc: true}
analyticsService: {binary: analytics-service, listenKey: ADMESH_ANALYTICS__LISTEN, grpc: true}
agentService: {binary: agent-service, listenKey: ADMESH_AGENT__LISTEN, grpc: true}
{{- end -}}

{{- define "admesh.labels" -}}
app.kubernetes.io/name: admesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "admesh.selector" -}}
app.kubernetes.io/name: admesh
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "admesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "admesh.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-credentials" (include "admesh.fullname" .)) -}}
{{- end -}}

{{- define "admesh.url" -}}
http://{{ include "admesh.fullname" .root }}-{{ .binary }}:{{ .port }}
{{- end -}}

{{/* Environment of every AdMesh container: settings from the ConfigMap,
     credentials from the Secret. */}}
{{- define "admesh.env" -}}
- name: ADMESH_DATABASE__URL
  valueFrom: {secretKeyRef: {name: {{ include "admesh.secretName" . }}, key: database-url}}
- name: ADMESH_REDIS__URL
  valueFrom: {secretKeyRef: {name: {{ include "admesh.secretName" . }}, key: redis-url}}
- name: ADMESH_AD_SERVER__CLICK_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "admesh.secretName" . }}, key: click-secret}}
- name: ADMESH_EDGE__ADMIN_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "admesh.secretName" . }}, key: admin-password}}
{{- end -}}

{{- define "admesh.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
