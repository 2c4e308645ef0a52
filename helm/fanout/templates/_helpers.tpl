{{/*
Helpers of the fanout chart. Helpers that work on one sink take
(dict "root" $ "sink" "<name>"); the rest take the root context.
*/}}

{{/* The sink names the runtime knows, in the order the chart renders them. */}}
{{- define "fanout.sinkNames" -}}
{{- list "postgres" "elasticsearch" "clickhouse" | toJson -}}
{{- end -}}

{{/* JSON list of the enabled sinks; use with `include ... | fromJsonArray`. */}}
{{- define "fanout.enabledSinks" -}}
{{- $enabled := list -}}
{{- range $name := include "fanout.sinkNames" . | fromJsonArray -}}
{{- if (index $.Values.sinks $name).enabled -}}
{{- $enabled = append $enabled $name -}}
{{- end -}}
{{- end -}}
{{- $enabled | toJson -}}
{{- end -}}

{{- define "fanout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>`, or the release name when it already holds the chart name. */}}
{{- define "fanout.fullname" -}}
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

{{/*
`<fullname>-<suffix>` within 63 characters: the fullname is cut, never the suffix, so
names that differ in the suffix (sink, backfill id) stay distinct.
Takes (dict "root" $ "suffix" "...").
*/}}
{{- define "fanout.componentName" -}}
{{- $max := int (sub 62 (len .suffix)) -}}
{{- $prefix := include "fanout.fullname" .root | trunc $max | trimSuffix "-" -}}
{{- printf "%s-%s" $prefix .suffix -}}
{{- end -}}

{{- define "fanout.sink.fullname" -}}
{{- include "fanout.componentName" (dict "root" .root "suffix" .sink) -}}
{{- end -}}

{{- define "fanout.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fanout.namespace" -}}
{{- .Release.Namespace -}}
{{- end -}}

{{- define "fanout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fanout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Chart labels win over commonLabels so selectors cannot be broken by values. */}}
{{- define "fanout.labels" -}}
{{- $labels := include "fanout.selectorLabels" . | fromYaml -}}
{{- $_ := set $labels "helm.sh/chart" (include "fanout.chart" .) -}}
{{- $_ := set $labels "app.kubernetes.io/version" (.Values.image.tag | default .Chart.AppVersion | trunc 63 | toString) -}}
{{- $_ := set $labels "app.kubernetes.io/managed-by" .Release.Service -}}
{{- $_ := set $labels "app.kubernetes.io/part-of" "fanout" -}}
{{- toYaml (merge $labels .Values.commonLabels) -}}
{{- end -}}

{{- define "fanout.sink.selectorLabels" -}}
{{ include "fanout.selectorLabels" .root }}
app.kubernetes.io/component: {{ .sink }}
{{- end -}}

{{- define "fanout.sink.labels" -}}
{{ include "fanout.labels" .root }}
app.kubernetes.io/component: {{ .sink }}
{{- end -}}

{{/* Labels of a backfill Job and its pods. Takes (dict "root" $ "sink" name "id" id). */}}
{{- define "fanout.backfill.labels" -}}
{{- $labels := include "fanout.labels" .root | fromYaml -}}
{{- $_ := set $labels "app.kubernetes.io/component" "backfill" -}}
{{- $_ := set $labels "fanout/sink" .sink -}}
{{- $_ := set $labels "fanout/backfill-id" .id -}}
{{- toYaml $labels -}}
{{- end -}}

{{/*
metadata.annotations (commonAnnotations plus .extra) as a YAML block, empty when none.
Use as: {{- with include "fanout.annotations" (dict "root" $ "extra" map) }}{{ . | nindent 2 }}{{ end }}
*/}}
{{- define "fanout.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) .root.Values.commonAnnotations -}}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "fanout.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry $repo -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "fanout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fanout.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fanout.configMapName" -}}
{{- include "fanout.componentName" (dict "root" . "suffix" "config") -}}
{{- end -}}

{{- define "fanout.configPath" -}}
/etc/fanout/config.yaml
{{- end -}}

{{/*
Secret values keyed by their key in the chart-made Secret; empty values left out.
Returns JSON; use with `include ... | fromJson`.
*/}}
{{- define "fanout.secretData" -}}
{{- $keys := .Values.secrets.keys -}}
{{- $es := .Values.sinks.elasticsearch -}}
{{- $all := dict
    $keys.kafkaSaslPassword .Values.kafka.saslPassword
    $keys.postgresPassword .Values.sinks.postgres.password
    $keys.elasticsearchPassword $es.password
    $keys.elasticsearchApiKey $es.apiKey
    $keys.clickhousePassword .Values.sinks.clickhouse.password -}}
{{- $data := dict -}}
{{- range $key, $value := $all -}}
{{- if $value -}}
{{- $_ := set $data $key $value -}}
{{- end -}}
{{- end -}}
{{- $data | toJson -}}
{{- end -}}

{{- define "fanout.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) (include "fanout.secretData" . | fromJson) -}}
true
{{- end -}}
{{- end -}}

{{- define "fanout.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "fanout.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
Env var name -> secret key for one sink (plus the Kafka SASL password every sink needs).
*/}}
{{- define "fanout.sink.secretEnvKeys" -}}
{{- $keys := .root.Values.secrets.keys -}}
{{- $env := dict "FANOUT_KAFKA__SASL_PASSWORD" $keys.kafkaSaslPassword -}}
{{- if eq .sink "postgres" -}}
{{- $_ := set $env "FANOUT_SINKS__POSTGRES__PASSWORD" $keys.postgresPassword -}}
{{- else if eq .sink "elasticsearch" -}}
{{- $_ := set $env "FANOUT_SINKS__ELASTICSEARCH__PASSWORD" $keys.elasticsearchPassword -}}
{{- $_ := set $env "FANOUT_SINKS__ELASTICSEARCH__API_KEY" $keys.elasticsearchApiKey -}}
{{- else if eq .sink "clickhouse" -}}
{{- $_ := set $env "FANOUT_SINKS__CLICKHOUSE__PASSWORD" $keys.clickhousePassword -}}
{{- end -}}
{{- $env | toJson -}}
{{- end -}}

{{/*
Env vars read from the Secret, as a JSON list. With an existing Secret every key is
referenced (optional); with the chart-made one only the keys it holds.
*/}}
{{- define "fanout.sink.secretEnv" -}}
{{- $root := .root -}}
{{- $existing := $root.Values.secrets.existingSecret -}}
{{- $data := include "fanout.secretData" $root | fromJson -}}
{{- $name := include "fanout.secretName" $root -}}
{{- $env := list -}}
{{- range $envName, $key := include "fanout.sink.secretEnvKeys" . | fromJson -}}
{{- if or $existing (hasKey $data $key) -}}
{{- $ref := dict "name" $name "key" $key "optional" (not (empty $existing)) -}}
{{- $env = append $env (dict "name" $envName "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- end -}}
{{- $env | toJson -}}
{{- end -}}

{{/* The runtime's config.yaml; secrets never appear here (they are env vars). */}}
{{- define "fanout.config" -}}
{{- $k := .Values.kafka -}}
{{- $kafka := dict
    "bootstrap_servers" $k.bootstrapServers
    "group_prefix" $k.groupPrefix
    "dlq_prefix" $k.dlqPrefix
    "security_protocol" $k.securityProtocol
    "extra" $k.extra -}}
{{- if $k.topicPattern -}}
{{- $_ := set $kafka "topic_pattern" $k.topicPattern -}}
{{- else -}}
{{- $_ := set $kafka "topics" $k.topics -}}
{{- end -}}
{{- if $k.saslMechanism }}{{ $_ := set $kafka "sasl_mechanism" $k.saslMechanism }}{{ end -}}
{{- if $k.saslUsername }}{{ $_ := set $kafka "sasl_username" $k.saslUsername }}{{ end -}}
{{- if $k.sslCaLocation }}{{ $_ := set $kafka "ssl_ca_location" $k.sslCaLocation }}{{ end -}}
{{- $sinks := dict -}}
{{- range $name := include "fanout.sinkNames" . | fromJsonArray -}}
{{- $_ := set $sinks $name (include "fanout.sink.config" (dict "root" $ "sink" $name) | fromJson) -}}
{{- end -}}
{{- $config := dict
    "kafka" $kafka
    "metrics" (dict "host" "0.0.0.0" "port" .Values.metrics.port)
    "logging" (dict "level" .Values.logging.level "format" .Values.logging.format)
    "sinks" $sinks -}}
{{- toYaml $config -}}
{{- end -}}

{{/* One sink's section of config.yaml, as JSON. A disabled sink is only `enabled: false`. */}}
{{- define "fanout.sink.config" -}}
{{- $v := index .root.Values.sinks .sink -}}
{{- if not $v.enabled -}}
{{- dict "enabled" false | toJson -}}
{{- else -}}
{{- $common := dict
    "enabled" true
    "batch" (dict "max_events" $v.batch.maxEvents "max_bytes" $v.batch.maxBytes "max_wait_ms" $v.batch.maxWaitMs)
    "retry" (dict "initial_backoff_ms" $v.retry.initialBackoffMs "max_backoff_ms" $v.retry.maxBackoffMs)
    "routing" (dict "include" $v.routing.include "exclude" $v.routing.exclude "target_format" $v.routing.targetFormat "tables" $v.routing.tables) -}}
{{- $specific := include (printf "fanout.sink.config.%s" .sink) $v | fromJson -}}
{{- merge $common $specific | toJson -}}
{{- end -}}
{{- end -}}

{{- define "fanout.sink.config.postgres" -}}
{{- $c := dict "host" .host "port" .port "user" .user "dbname" .dbname "schema" .schema "sslmode" .sslmode -}}
{{- if .sslrootcert }}{{ $_ := set $c "sslrootcert" .sslrootcert }}{{ end -}}
{{- $c | toJson -}}
{{- end -}}

{{- define "fanout.sink.config.elasticsearch" -}}
{{- $c := dict "hosts" .hosts "index_prefix" .indexPrefix "refresh" .refresh "request_timeout_s" .requestTimeoutS "verify_certs" .verifyCerts -}}
{{- if .username }}{{ $_ := set $c "username" .username }}{{ end -}}
{{- if .caCerts }}{{ $_ := set $c "ca_certs" .caCerts }}{{ end -}}
{{- $c | toJson -}}
{{- end -}}

{{- define "fanout.sink.config.clickhouse" -}}
{{- $c := dict "mode" .mode "database" .database -}}
{{- if eq .mode "embedded" -}}
{{- $_ := set $c "data_dir" .embedded.dataDir -}}
{{- else -}}
{{- $_ := set $c "host" .host -}}
{{- $_ := set $c "port" .port -}}
{{- $_ := set $c "username" .username -}}
{{- $_ := set $c "secure" .secure -}}
{{- if .caCert }}{{ $_ := set $c "ca_cert" .caCert }}{{ end -}}
{{- end -}}
{{- $c | toJson -}}
{{- end -}}

{{- define "fanout.backfillId" -}}
{{- .Values.backfill.id | default (printf "r%d" (int .Release.Revision)) -}}
{{- end -}}

{{- define "fanout.clickhouseEmbedded" -}}
{{- $ch := .Values.sinks.clickhouse -}}
{{- if and $ch.enabled (eq $ch.mode "embedded") -}}
true
{{- end -}}
{{- end -}}

{{/*
Checks across values that values.schema.json cannot state with a clear message.
Rendered once, from the ConfigMap template.
*/}}
{{- define "fanout.validate" -}}
{{- $enabled := include "fanout.enabledSinks" . | fromJsonArray -}}
{{- if not $enabled -}}
{{- fail "fanout: enable at least one sink (sinks.postgres.enabled, sinks.elasticsearch.enabled, sinks.clickhouse.enabled)" -}}
{{- end -}}
{{- $k := .Values.kafka -}}
{{- if and $k.topics $k.topicPattern -}}
{{- fail "fanout: set kafka.topics or kafka.topicPattern, not both" -}}
{{- end -}}
{{- if not (or $k.topics $k.topicPattern) -}}
{{- fail "fanout: set kafka.topics (a list of topics) or kafka.topicPattern (a regular expression)" -}}
{{- end -}}
{{- if .Values.secrets.existingSecret -}}
{{- range $key, $_ := include "fanout.secretData" . | fromJson -}}
{{- fail (printf "fanout: secrets.existingSecret is set, so leave the password values empty (a value for Secret key %q was given); put it in the existing Secret" $key) -}}
{{- end -}}
{{- end -}}
{{- range $name := $enabled -}}
{{- $a := (index $.Values.sinks $name).autoscaling -}}
{{- if and $a.enabled (not $a.partitionCount) -}}
{{- fail (printf "fanout: sinks.%s.autoscaling.partitionCount is required when autoscaling is enabled: set it to the number of partitions the consumer group fanout-%s shares (more replicas would sit idle)" $name $name) -}}
{{- end -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (min (int $a.maxReplicas) (int $a.partitionCount))) -}}
{{- fail (printf "fanout: sinks.%s.autoscaling.minReplicas (%d) is greater than maxReplicas capped at partitionCount (%d)" $name (int $a.minReplicas) (min (int $a.maxReplicas) (int $a.partitionCount))) -}}
{{- end -}}
{{- end -}}
{{- if include "fanout.clickhouseEmbedded" . -}}
{{- $ch := .Values.sinks.clickhouse -}}
{{- if or (gt (int $ch.replicaCount) 1) $ch.autoscaling.enabled -}}
{{- fail "fanout: sinks.clickhouse.mode=embedded keeps its data inside one pod: set sinks.clickhouse.replicaCount to 1 and sinks.clickhouse.autoscaling.enabled to false" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "fanout: metrics.serviceMonitor.enabled needs metrics.service.enabled=true" -}}
{{- end -}}
{{- if .Values.backfill.enabled -}}
{{- if not .Values.backfill.sinks -}}
{{- fail "fanout: backfill.enabled is true but backfill.sinks is empty: name the sinks to backfill" -}}
{{- end -}}
{{- range $name := .Values.backfill.sinks -}}
{{- if not (has $name $enabled) -}}
{{- fail (printf "fanout: backfill.sinks names %q but sinks.%s.enabled is false" $name $name) -}}
{{- end -}}
{{- if and (eq $name "clickhouse") (include "fanout.clickhouseEmbedded" $) -}}
{{- fail "fanout: backfill of sinks.clickhouse in embedded mode is not supported by a Job (the chDB data lives in the sink's pod): run `fanout backfill` in that pod" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Volumes of a pod running one sink (Deployment or backfill Job). */}}
{{- define "fanout.volumes" -}}
- name: config
  configMap:
    name: {{ include "fanout.configMapName" .root }}
- name: tmp
  emptyDir:
    {{- with .root.Values.tmpDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if and (eq .sink "clickhouse") (include "fanout.clickhouseEmbedded" .root) }}
{{- $embedded := .root.Values.sinks.clickhouse.embedded }}
- name: chdb-data
  {{- if $embedded.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $embedded.existingClaim }}
  {{- else }}
  emptyDir:
    {{- with $embedded.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "fanout.volumeMounts" -}}
- name: config
  mountPath: /etc/fanout
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if and (eq .sink "clickhouse") (include "fanout.clickhouseEmbedded" .root) }}
- name: chdb-data
  mountPath: {{ .root.Values.sinks.clickhouse.embedded.dataDir }}
{{- end }}
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The pod spec shared by a sink's Deployment and its backfill Job.
Takes (dict "root" $ "sink" name "args" list "resources" map "probes" bool "restartPolicy" string).
*/}}
{{- define "fanout.podSpec" -}}
{{- $root := .root -}}
{{- $v := index $root.Values.sinks .sink -}}
serviceAccountName: {{ include "fanout.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
{{- with $root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: fanout
    image: {{ include "fanout.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    {{- $env := list (dict "name" "FANOUT_CONFIG" "value" (include "fanout.configPath" $root)) }}
    {{- $env = concat $env (include "fanout.sink.secretEnv" . | fromJsonArray) $v.env }}
    env:
      {{- toYaml $env | nindent 6 }}
    ports:
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
    {{- if .probes }}
    {{- with $root.Values.livenessProbe }}
    {{- if .enabled }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      {{- toYaml (omit . "enabled") | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- with $root.Values.readinessProbe }}
    {{- if .enabled }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      {{- toYaml (omit . "enabled") | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- with .resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $root.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      {{- include "fanout.volumeMounts" . | nindent 6 }}
volumes:
  {{- include "fanout.volumes" . | nindent 2 }}
{{- end -}}

{{/* Pod annotations that roll the pods when their config or chart-made Secret changes. */}}
{{- define "fanout.checksumAnnotations" -}}
checksum/config: {{ include "fanout.config" . | sha256sum }}
{{- if include "fanout.createSecret" . }}
checksum/secret: {{ include "fanout.secretData" . | sha256sum }}
{{- end }}
{{- end -}}
