{{- define "sp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "sp.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sp.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "sp.credentialsSecret" -}}{{ include "sp.fullname" . }}-credentials{{- end -}}

{{/* secretKeyRef for one credential: {root, cred, key (own key name), generated (key in the chart's Secret), optional} */}}
{{- define "sp.secretRef" -}}
secretKeyRef:
  name: {{ .cred.existingSecret | default (include "sp.credentialsSecret" .root) }}
  key: {{ if .cred.existingSecret }}{{ .key }}{{ else }}{{ .generated }}{{ end }}
  {{- if .optional }}
  optional: true
  {{- end }}
{{- end -}}

{{- define "sp.dbHost" -}}
{{- if .Values.postgresql.bundled.enabled -}}{{ include "sp.fullname" . }}-postgresql{{- else -}}{{ required "postgresql.host is required when postgresql.bundled.enabled=false" .Values.postgresql.host }}{{- end -}}
{{- end -}}

{{- define "sp.amqpHost" -}}
{{- if .Values.rabbitmq.bundled.enabled -}}{{ include "sp.fullname" . }}-rabbitmq{{- else -}}{{ required "rabbitmq.host is required when rabbitmq.bundled.enabled=false" .Values.rabbitmq.host }}{{- end -}}
{{- end -}}

{{- define "sp.managementUrl" -}}
{{- if .Values.rabbitmq.bundled.enabled -}}http://{{ include "sp.fullname" . }}-rabbitmq:15672{{- else -}}{{ required "rabbitmq.managementUrl is required when rabbitmq.bundled.enabled=false" .Values.rabbitmq.managementUrl }}{{- end -}}
{{- end -}}

{{/* The container environment every platform process shares. */}}
{{- define "sp.env" -}}
- name: PLATFORM_DB_PASSWORD
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.database "key" .Values.credentials.database.key "generated" "db-password") | nindent 4 }}
- name: PLATFORM_AMQP_PASSWORD
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.rabbitmq "key" .Values.credentials.rabbitmq.key "generated" "amqp-password") | nindent 4 }}
- name: PLATFORM_RABBITMQ_ADMIN_PASSWORD
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.rabbitmq "key" .Values.credentials.rabbitmq.key "generated" "amqp-password") | nindent 4 }}
- name: PLATFORM_SECRET_KEY
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.secretKey "key" .Values.credentials.secretKey.key "generated" "secret-key") | nindent 4 }}
- name: PLATFORM_S3_ACCESS_KEY
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.s3 "key" .Values.credentials.s3.accessKeyKey "generated" "s3-access-key") | nindent 4 }}
- name: PLATFORM_S3_SECRET_KEY
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.s3 "key" .Values.credentials.s3.secretKeyKey "generated" "s3-secret-key") | nindent 4 }}
- name: PLATFORM_SMTP_PASSWORD
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.smtp "key" .Values.credentials.smtp.key "generated" "smtp-password" "optional" true) | nindent 4 }}
- name: PLATFORM_STRIPE_SECRET_KEY
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.stripe "key" .Values.credentials.stripe.secretKeyKey "generated" "stripe-secret-key" "optional" true) | nindent 4 }}
- name: PLATFORM_STRIPE_WEBHOOK_SECRET
  valueFrom:
    {{- include "sp.secretRef" (dict "root" . "cred" .Values.credentials.stripe "key" .Values.credentials.stripe.webhookSecretKey "generated" "stripe-webhook-secret" "optional" true) | nindent 4 }}
{{- with .Values.credentials.dataPlane }}
- name: PLATFORM_K8S_SUPAVISOR_API_SECRET
  valueFrom:
    {{- include "sp.secretRef" (dict "root" $ "cred" . "key" .supavisorKey "generated" "supavisor-api-jwt-secret" "optional" true) | nindent 4 }}
- name: PLATFORM_K8S_REALTIME_API_SECRET
  valueFrom:
    {{- include "sp.secretRef" (dict "root" $ "cred" . "key" .realtimeKey "generated" "realtime-api-jwt-secret" "optional" true) | nindent 4 }}
- name: PLATFORM_K8S_STORAGE_ADMIN_KEY
  valueFrom:
    {{- include "sp.secretRef" (dict "root" $ "cred" . "key" .storageKey "generated" "storage-admin-api-key" "optional" true) | nindent 4 }}
{{- end }}
{{- /* nameko's AMQP URI, composed by the kubelet from the variables above ($(VAR) expansion). */}}
- name: NAMEKO_AMQP_URI
  value: {{ printf "pyamqp://%s:$(PLATFORM_AMQP_PASSWORD)@%s:%d/%s" .Values.rabbitmq.user (include "sp.amqpHost" .) (int .Values.rabbitmq.port) (.Values.rabbitmq.vhost | urlquery) | quote }}
{{- end -}}
