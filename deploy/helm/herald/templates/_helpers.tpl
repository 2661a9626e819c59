{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "herald.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.labels" -}}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The port of a listen address such as ":8080" or "0.0.0.0:8080". */}}
{{- define "herald.port" -}}
{{- regexReplaceAll "^.*:" . "" -}}
{{- end -}}

{{/* Where the HS256 key is mounted. */}}
{{- define "herald.hs256File" -}}
/etc/herald-secrets/hs256.key
{{- end -}}

{{/*
The config file of herald serve: .Values.config plus what the chart sets
from its own values. Keys are herald serve's flag names.
*/}}
{{- define "herald.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- range $k := list "config" "shutdown-timeout" "broker" "broker-start-timeout" "nats-url" "nats-replicas" "nats-user" "nats-password" "redis-url" "redis-password" "auth-hs256-secret-file" "auth-hs256-secret" "auth-jwks-url" "dev" "demo" -}}
{{- if hasKey $c $k -}}
{{- fail (printf "config.%s: the chart sets it from its own values (shutdownTimeoutSeconds, broker, auth); remove it from config" $k) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.broker.kind (list "memory" "nats" "redis")) -}}
{{- fail (printf "broker.kind is %q; want memory, nats or redis" .Values.broker.kind) -}}
{{- end -}}
{{- if and (eq .Values.broker.kind "memory") (gt (int .Values.replicaCount) 1) -}}
{{- fail "broker.kind memory keeps each pod's history apart: with replicaCount above 1 give the pods a shared broker (nats or redis)" -}}
{{- end -}}
{{- $_ := set $c "shutdown-timeout" (printf "%ds" (int .Values.shutdownTimeoutSeconds)) -}}
{{- $_ := set $c "broker" .Values.broker.kind -}}
{{- if eq .Values.broker.kind "nats" -}}
{{- $_ := set $c "broker-start-timeout" .Values.broker.startTimeout -}}
{{- $_ := set $c "nats-url" .Values.broker.nats.url -}}
{{- $_ := set $c "nats-replicas" (int .Values.broker.nats.replicas) -}}
{{- if .Values.broker.nats.user -}}
{{- $_ := set $c "nats-user" .Values.broker.nats.user -}}
{{- end -}}
{{- else if eq .Values.broker.kind "redis" -}}
{{- $_ := set $c "broker-start-timeout" .Values.broker.startTimeout -}}
{{- $_ := set $c "redis-url" .Values.broker.redis.url -}}
{{- end -}}
{{- if .Values.auth.hs256Secret.name -}}
{{- $_ := set $c "auth-hs256-secret-file" (include "herald.hs256File" .) -}}
{{- end -}}
{{- if .Values.auth.jwksURL -}}
{{- $_ := set $c "auth-jwks-url" .Values.auth.jwksURL -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}
