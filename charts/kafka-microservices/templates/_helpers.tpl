{{/* The chart name. */}}
{{- define "km.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* An object name: the prefix and a base name. */}}
{{- define "km.fullname" -}}
{{- printf "%s%s" .root.Values.namePrefix .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* chart label value: name-version. */}}
{{- define "km.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object, but the instance (selector labels carry it for service objects). */}}
{{- define "km.baseLabels" -}}
helm.sh/chart: {{ include "km.chart" . }}
app.kubernetes.io/part-of: {{ include "km.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels of objects that belong to no one service. */}}
{{- define "km.commonLabels" -}}
{{ include "km.baseLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one service (no chart version: selectors are immutable). */}}
{{- define "km.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Labels of one service's objects. */}}
{{- define "km.labels" -}}
{{ include "km.baseLabels" .root }}
{{ include "km.selectorLabels" . }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* The image of one service. */}}
{{- define "km.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .name (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* The ServiceAccount name. */}}
{{- define "km.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s%s" .Values.namePrefix (include "km.name" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The port every service serves /healthz, /readyz and /metrics on. */}}
{{- define "km.opsPort" -}}9090{{- end -}}

{{/*
A service's SHUTDOWN_TIMEOUT_MS: the grace period less its preStop pause and a 5 s margin. Fails the
render when that cannot hold the drain, the final commit (5 s) and the producer flush (the delivery
timeout), so budgets that disagree never reach a cluster.
*/}}
{{- define "km.shutdownTimeoutMs" -}}
{{- $k := .root.Values.kafka -}}
{{- $preStop := int (default 0 .svc.preStopSleepSeconds) -}}
{{- $budget := mul (sub (sub (int .root.Values.terminationGracePeriodSeconds) $preStop) 5) 1000 -}}
{{- $needed := add (int $k.drainTimeoutMs) 5000 (int $k.deliveryTimeoutMs) -}}
{{- if ge (int $k.drainTimeoutMs) (int $k.sessionTimeoutMs) -}}
{{- fail (printf "kafka.drainTimeoutMs (%d) must be below kafka.sessionTimeoutMs (%d)" (int $k.drainTimeoutMs) (int $k.sessionTimeoutMs)) -}}
{{- end -}}
{{- if gt (int $k.deliveryTimeoutMs) (int $k.drainTimeoutMs) -}}
{{- fail (printf "kafka.deliveryTimeoutMs (%d) must be at most kafka.drainTimeoutMs (%d)" (int $k.deliveryTimeoutMs) (int $k.drainTimeoutMs)) -}}
{{- end -}}
{{- if lt $budget $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) leaves %s %d ms to stop, less than drainTimeoutMs + 5000 + deliveryTimeoutMs = %d ms" (int .root.Values.terminationGracePeriodSeconds) .name $budget $needed) -}}
{{- end -}}
{{- $budget -}}
{{- end -}}
