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

{{/* The Kafka user a service logs in as (its KafkaUser, and the Secret Strimzi makes for it). */}}
{{- define "km.kafkaUser" -}}
{{- include "km.fullname" . -}}
{{- end -}}

{{/*
How a client reaches Kafka in `kafka.security.mode`: its bootstrap servers and, in the scram and
mtls modes, its protocol and credentials. Secrets are files mounted by "km.kafkaVolumes"; no
secret value is ever rendered. Called with (dict "root" $ "name" <service>).
*/}}
{{- define "km.kafkaEnv" -}}
{{- $sec := .root.Values.kafka.security -}}
{{- if eq $sec.mode "plaintext" }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .root.Values.kafka.bootstrapServers | quote }}
{{- else }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $sec.bootstrapServers | quote }}
- name: KAFKA_SSL_CA_LOCATION
  value: /etc/kafka/cluster-ca/ca.crt
{{- if eq $sec.mode "scram" }}
- name: KAFKA_SECURITY_PROTOCOL
  value: sasl_ssl
- name: KAFKA_SASL_MECHANISM
  value: SCRAM-SHA-512
- name: KAFKA_SASL_USERNAME
  value: {{ include "km.kafkaUser" . | quote }}
- name: KAFKA_SASL_PASSWORD_FILE
  value: /etc/kafka/user/password
{{- else }}
- name: KAFKA_SECURITY_PROTOCOL
  value: ssl
- name: KAFKA_SSL_CERTIFICATE_LOCATION
  value: /etc/kafka/user/user.crt
- name: KAFKA_SSL_KEY_LOCATION
  value: /etc/kafka/user/user.key
{{- end }}
{{- end }}
{{- end -}}

{{/* The mounts of "km.kafkaVolumes" (nothing in plaintext mode). */}}
{{- define "km.kafkaVolumeMounts" -}}
{{- if ne .root.Values.kafka.security.mode "plaintext" }}
- name: kafka-cluster-ca
  mountPath: /etc/kafka/cluster-ca
  readOnly: true
- name: kafka-user
  mountPath: /etc/kafka/user
  readOnly: true
{{- end }}
{{- end -}}

{{/* The cluster CA (`<cluster>-cluster-ca-cert`) and the user's Secret, as files. */}}
{{- define "km.kafkaVolumes" -}}
{{- $sec := .root.Values.kafka.security -}}
{{- if ne $sec.mode "plaintext" }}
- name: kafka-cluster-ca
  secret:
    secretName: {{ printf "%s-cluster-ca-cert" .root.Values.kafka.clusterName }}
    items:
      - key: ca.crt
        path: ca.crt
- name: kafka-user
  secret:
    secretName: {{ include "km.kafkaUser" . }}
    items:
      {{- if eq $sec.mode "scram" }}
      - key: password
        path: password
      {{- else }}
      - key: user.crt
        path: user.crt
      - key: user.key
        path: user.key
      {{- end }}
{{- end }}
{{- end -}}

{{/*
Gives every entry of `services` the `serviceDefaults` it does not set itself, key by key through
nested maps (a key that is present, even null or false, is kept). It changes .Values in place and
renders nothing; every template that reads `services` includes it first. (Sprig's `merge` is not
used: it treats `false` and `0` as unset, so `enabled: false` or `replicas: 0` would be lost.)
*/}}
{{- define "km.applyDefaults" -}}
{{- range $name, $svc := .Values.services }}
{{- include "km.fill" (dict "dst" $svc "src" $.Values.serviceDefaults) }}
{{- end }}
{{- end -}}

{{- define "km.fill" -}}
{{- $dst := .dst -}}
{{- range $key, $value := .src }}
{{- if not (hasKey $dst $key) }}
{{- $_ := set $dst $key (deepCopy $value) }}
{{- else if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) }}
{{- include "km.fill" (dict "dst" (get $dst $key) "src" $value) }}
{{- end }}
{{- end }}
{{- end -}}
