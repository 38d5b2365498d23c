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
