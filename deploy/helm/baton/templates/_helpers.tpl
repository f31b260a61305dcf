{{- define "baton.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "baton.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "baton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "baton.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "baton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "baton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "baton.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "baton.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "baton.configMapName" -}}
{{- if .Values.existingConfigMap }}
{{- .Values.existingConfigMap }}
{{- else if .Values.config }}
{{- printf "%s-config" (include "baton.fullname" .) }}
{{- else }}
{{- fail "set config (baton.yaml as YAML, or its text: --set-file config=baton.yaml) or existingConfigMap" }}
{{- end }}
{{- end }}

{{/* Environment shared by every Baton container (no secrets: see baton.secretEnv). */}}
{{- define "baton.envFrom" -}}
- configMapRef:
    name: {{ include "baton.fullname" . }}-env
{{- end }}

{{/* A component's secrets, (dict "secrets" {existingSecret, keys} "field" "secrets.api"): each
key of its Secret as the variable of that name, and no other key of it. */}}
{{- define "baton.secretEnv" -}}
{{- if .secrets.keys }}
{{- $secret := required (printf "set %s.existingSecret: the Secret holding %s (kubectl create secret generic ...)" .field (join ", " .secrets.keys)) .secrets.existingSecret }}
{{- range .secrets.keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the API and the workers. */}}
{{- define "baton.podSpec" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Volumes shared by the API and the workers: the config, BATON_HOME and /tmp. */}}
{{- define "baton.volumes" -}}
- name: config
  configMap:
    name: {{ include "baton.configMapName" . }}
- name: home
  {{- if .Values.home.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.home.existingClaim }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "baton.volumeMounts" -}}
- name: config
  mountPath: /config
  readOnly: true
- name: home
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- end }}
