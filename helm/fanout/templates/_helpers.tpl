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

{{/* Labels of a backfill Job (metadata). Takes (dict "root" $ "sink" name "runId" id). */}}
{{- define "fanout.backfill.labels" -}}
{{- $labels := include "fanout.labels" .root | fromYaml -}}
{{- $_ := set $labels "app.kubernetes.io/component" "backfill" -}}
{{- $_ := set $labels "fanout/sink" .sink -}}
{{- $_ := set $labels "fanout/backfill-run" .runId -}}
{{- toYaml $labels -}}
{{- end -}}

{{/*
Labels of a backfill Job's pods: only what identifies the run, never the chart or app version
or values an unrelated upgrade changes (a Job's pod template is immutable).
*/}}
{{- define "fanout.backfill.podLabels" -}}
{{- $labels := include "fanout.selectorLabels" .root | fromYaml -}}
{{- $_ := set $labels "app.kubernetes.io/component" "backfill" -}}
{{- $_ := set $labels "fanout/sink" .sink -}}
{{- $_ := set $labels "fanout/backfill-run" .runId -}}
{{- toYaml (merge $labels .root.Values.backfill.podLabels) -}}
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

{{/* One ConfigMap per sink, so a change to one sink's config rolls only that sink. */}}
{{- define "fanout.sink.configMapName" -}}
{{- include "fanout.componentName" (dict "root" .root "suffix" (printf "%s-config" .sink)) -}}
{{- end -}}

{{/* True when the cluster serves an API version, or values.extraApiVersions names it. Takes (dict "root" $ "api" "group/version"). */}}
{{- define "fanout.hasApi" -}}
{{- if or (.root.Capabilities.APIVersions.Has .api) (has .api .root.Values.extraApiVersions) -}}
true
{{- end -}}
{{- end -}}

{{- define "fanout.configPath" -}}
/etc/fanout/config.yaml
{{- end -}}

{{/* Where every pod mounts the Secret: each key is a file; the …_file settings point here.
Not under /etc/fanout: nothing is mounted inside the ConfigMap's read-only volume. */}}
{{- define "fanout.secretsDir" -}}
/etc/fanout-secrets
{{- end -}}

{{/*
Every secret the runtime reads from a file, as a JSON list of
{section, setting, key, name, value, applies}: section "kafka", "registry"
(kafka.schema_registry) or a sink, setting its `…_file` key, key the Secret key from
secrets.keys (empty: not used), name the key's default,
value the chart-made Secret's value, applies whether the configuration uses it. With
secrets.existingSecret a secret is read when its key is set and it applies; with the chart-made
Secret, when its value is set.
*/}}
{{- define "fanout.secretSources" -}}
{{- $keys := .Values.secrets.keys -}}
{{- $k := .Values.kafka -}}
{{- $s := .Values.sinks -}}
{{- $userpass := has $k.saslMechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512") -}}
{{- list
    (dict "section" "kafka" "setting" "sasl_password_file" "key" $keys.kafkaSaslPassword "name" "kafka-sasl-password" "value" $k.saslPassword "applies" $userpass)
    (dict "section" "kafka" "setting" "oauth_client_secret_file" "key" $keys.kafkaOauthClientSecret "name" "kafka-oauth-client-secret" "value" $k.oauthClientSecret "applies" (eq $k.saslMechanism "OAUTHBEARER"))
    (dict "section" "kafka" "setting" "ssl_key_password_file" "key" $keys.kafkaSslKeyPassword "name" "kafka-ssl-key-password" "value" "" "applies" (not (empty $k.sslKeyLocation)))
    (dict "section" "registry" "setting" "basic_auth_password_file" "key" $keys.schemaRegistryPassword "name" "schema-registry-password" "value" $k.schemaRegistry.basicAuthPassword "applies" (not (empty $k.schemaRegistry.basicAuthUser)))
    (dict "section" "postgres" "setting" "password_file" "key" $keys.postgresPassword "name" "postgres-password" "value" $s.postgres.password "applies" true)
    (dict "section" "postgres" "setting" "sslpassword_file" "key" $keys.postgresSslPassword "name" "postgres-ssl-password" "value" "" "applies" (not (empty $s.postgres.sslkey)))
    (dict "section" "elasticsearch" "setting" "password_file" "key" $keys.elasticsearchPassword "name" "elasticsearch-password" "value" $s.elasticsearch.password "applies" (not (empty $s.elasticsearch.username)))
    (dict "section" "elasticsearch" "setting" "api_key_file" "key" $keys.elasticsearchApiKey "name" "elasticsearch-api-key" "value" $s.elasticsearch.apiKey "applies" true)
    (dict "section" "clickhouse" "setting" "password_file" "key" $keys.clickhousePassword "name" "clickhouse-password" "value" $s.clickhouse.password "applies" (eq $s.clickhouse.mode "server"))
  | toJson -}}
{{- end -}}

{{/*
Secret values keyed by their key in the chart-made Secret; empty values left out.
Returns JSON; use with `include ... | fromJson`.
*/}}
{{- define "fanout.secretData" -}}
{{- $data := dict -}}
{{- range include "fanout.secretSources" . | fromJsonArray -}}
{{- if .value -}}
{{- $_ := set $data (.key | default .name) .value -}}
{{- end -}}
{{- end -}}
{{- $data | toJson -}}
{{- end -}}

{{- define "fanout.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) (include "fanout.secretData" . | fromJson) -}}
true
{{- end -}}
{{- end -}}

{{/* True when the pods mount a Secret (existing or chart-made). */}}
{{- define "fanout.mountSecret" -}}
{{- if or .Values.secrets.existingSecret (include "fanout.createSecret" .) -}}
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
The `…_file` settings of one sink's config.yaml, as JSON {"kafka": {...}, "registry": {...},
"<sink>": {...}} (registry: kafka.schema_registry): setting -> the file of its key in the
mounted Secret.
*/}}
{{- define "fanout.sink.secretFiles" -}}
{{- $existing := .root.Values.secrets.existingSecret -}}
{{- $dir := include "fanout.secretsDir" .root -}}
{{- $files := dict "kafka" (dict) "registry" (dict) .sink (dict) -}}
{{- range include "fanout.secretSources" .root | fromJsonArray -}}
{{- if hasKey $files .section -}}
{{- $key := "" -}}
{{- if $existing -}}
{{- if .applies }}{{ $key = .key }}{{ end -}}
{{- else if .value -}}
{{- $key = .key | default .name -}}
{{- end -}}
{{- if $key -}}
{{- $_ := set (index $files .section) .setting (printf "%s/%s" $dir $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $files | toJson -}}
{{- end -}}

{{/*
Settings passed through by name: each values key (camelCase) becomes the runtime's key
(snake_case); null, "" and empty lists and maps are left out, so the runtime's default (or
"none") applies. Takes (dict "values" map "keys" list); returns JSON.
*/}}
{{- define "fanout.passThrough" -}}
{{- $out := dict -}}
{{- range $key := .keys -}}
{{- $value := index $.values $key -}}
{{- $unset := or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) -}}
{{- if or (kindIs "slice" $value) (kindIs "map" $value) }}{{ $unset = empty $value }}{{ end -}}
{{- if not $unset -}}
{{- $_ := set $out (snakecase $key) $value -}}
{{- end -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* The kafka: section of config.yaml, as JSON (secrets: fanout.sink.secretFiles). */}}
{{- define "fanout.kafkaConfig" -}}
{{- $k := .Values.kafka -}}
{{- $keys := list "bootstrapServers" "groupPrefix" "dlqPrefix" "clientId" "securityProtocol"
    "saslMechanism" "saslUsername" "oauthClientId" "oauthTokenEndpointUrl" "oauthScope"
    "sslCaLocation" "sslCertificateLocation" "sslKeyLocation" "sessionTimeoutMs"
    "maxPollIntervalMs" "prefetchMaxKbytes" "fetchMaxBytes" "dlqRetentionMs"
    "dlqMaxMessageBytes" "dlqPartitions" "dlqReplicationFactor" "flattenedTopics" "tombstones"
    "versionSource" "unavailableValuePlaceholders" "extra" "valueFormat" "keyFormat" -}}
{{- $kafka := include "fanout.passThrough" (dict "values" $k "keys" $keys) | fromJson -}}
{{- $registry := list "url" "basicAuthUser" "sslCaLocation" "timeoutS" "unavailableAfterS" -}}
{{- $_ := set $kafka "schema_registry" (include "fanout.passThrough" (dict "values" $k.schemaRegistry "keys" $registry) | fromJson) -}}
{{- if $k.topicPattern -}}
{{- $_ := set $kafka "topic_pattern" $k.topicPattern -}}
{{- else -}}
{{- $_ := set $kafka "topics" $k.topics -}}
{{- end -}}
{{- $kafka | toJson -}}
{{- end -}}

{{/*
One sink's config.yaml: the shared kafka/metrics/logging sections and that sink's section only
(the runtime's defaults leave the other sinks disabled). Secrets never appear here: only the
paths of their files in the mounted Secret (`…_file`).
*/}}
{{- define "fanout.sink.configYaml" -}}
{{- $root := .root -}}
{{- $files := include "fanout.sink.secretFiles" . | fromJson -}}
{{- $config := dict
    "kafka" (merge (include "fanout.kafkaConfig" $root | fromJson) $files.kafka (dict "schema_registry" $files.registry))
    "metrics" (dict "host" "0.0.0.0" "port" $root.Values.metrics.port)
    "logging" (dict "level" $root.Values.logging.level "format" $root.Values.logging.format)
    "sinks" (dict .sink (merge (include "fanout.sink.config" . | fromJson) (index $files .sink))) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* One sink's section of config.yaml, as JSON. */}}
{{- define "fanout.sink.config" -}}
{{- $v := index .root.Values.sinks .sink -}}
{{- $retry := list "initialBackoffMs" "maxBackoffMs" "multiplier" "unknownErrorAttempts" -}}
{{- $routing := list "include" "exclude" "targetFormat" "tables" "keyless" "allowMerge" -}}
{{- $common := dict
    "enabled" true
    "batch" (include "fanout.passThrough" (dict "values" $v.batch "keys" (list "maxEvents" "maxBytes" "maxWaitMs")) | fromJson)
    "retry" (include "fanout.passThrough" (dict "values" $v.retry "keys" $retry) | fromJson)
    "routing" (include "fanout.passThrough" (dict "values" $v.routing "keys" $routing) | fromJson) -}}
{{- $_ := merge $common (include "fanout.passThrough" (dict "values" $v "keys" (list "configErrorExitS")) | fromJson) -}}
{{- $specific := include (printf "fanout.sink.config.%s" .sink) $v | fromJson -}}
{{- merge $common $specific | toJson -}}
{{- end -}}

{{- define "fanout.sink.config.postgres" -}}
{{- $keys := list "host" "port" "user" "dbname" "schema" "sslmode" "sslrootcert" "sslcert" "sslkey"
    "connectTimeoutS" "statementTimeoutS" "lockTimeoutS" "applicationName" "widenColumns"
    "tombstoneRetentionHours" "tombstonePurgeIntervalMinutes" -}}
{{- include "fanout.passThrough" (dict "values" . "keys" $keys) -}}
{{- end -}}

{{- define "fanout.sink.config.elasticsearch" -}}
{{- $keys := list "hosts" "username" "indexPrefix" "refresh" "caCerts" "verifyCerts"
    "requestTimeoutS" "bulkMaxActions" "bulkMaxBytes" "bulkItemRetries" "indexSettings"
    "mappings" "jsonMapping" "jsonColumnMappings" "tombstoneRetentionHours"
    "tombstonePurgeIntervalMinutes" -}}
{{- include "fanout.passThrough" (dict "values" . "keys" $keys) -}}
{{- end -}}

{{- define "fanout.sink.config.clickhouse" -}}
{{- $keys := list "mode" "database" "sendReceiveTimeoutS" "lowCardinality" "deduplicationWindow"
    "widenColumns" -}}
{{- if ne .mode "embedded" -}}
{{- $keys = concat $keys (list "host" "port" "username" "secure" "caCert" "verifyCerts" "connectTimeoutS") -}}
{{- end -}}
{{- $c := include "fanout.passThrough" (dict "values" . "keys" $keys) | fromJson -}}
{{- if eq .mode "embedded" }}{{ $_ := set $c "data_dir" .embedded.dataDir }}{{ end -}}
{{- $c | toJson -}}
{{- end -}}

{{- define "fanout.clickhouseEmbedded" -}}
{{- $ch := .Values.sinks.clickhouse -}}
{{- if and $ch.enabled (eq $ch.mode "embedded") -}}
true
{{- end -}}
{{- end -}}

{{/* "StatefulSet" for ClickHouse in embedded mode (its data is on a claim), else "Deployment". */}}
{{- define "fanout.sink.workloadKind" -}}
{{- if and (eq .sink "clickhouse") (include "fanout.clickhouseEmbedded" .root) -}}
StatefulSet
{{- else -}}
Deployment
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds of a sink's pods: sinks.<sink>.terminationGracePeriodSeconds, or
derived. On SIGTERM a worker finishes the write in flight, writes and commits the batch it
had prepared (two writes, each bounded by the sink's write timeout), flushes its DLQ producer
(up to 30 s) and leaves the group:
  2 x write timeout + ceil(batch.maxWaitMs / 1000) + 40
The write timeout is requestTimeoutS (Elasticsearch), sendReceiveTimeoutS (ClickHouse), and
statementTimeoutS for PostgreSQL (60 s when it is 0, no bound).
*/}}
{{- define "fanout.sink.gracePeriod" -}}
{{- $v := index .root.Values.sinks .sink -}}
{{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) -}}
{{- $v.terminationGracePeriodSeconds -}}
{{- else -}}
{{- $write := 60 -}}
{{- if and (eq .sink "postgres") $v.statementTimeoutS }}{{ $write = int (ceil $v.statementTimeoutS) }}{{ end -}}
{{- if eq .sink "elasticsearch" }}{{ $write = int (ceil $v.requestTimeoutS) }}{{ end -}}
{{- if eq .sink "clickhouse" }}{{ $write = int (ceil $v.sendReceiveTimeoutS) }}{{ end -}}
{{- add (mul 2 $write) (div (add (int $v.batch.maxWaitMs) 999) 1000) 40 -}}
{{- end -}}
{{- end -}}

{{/* The KEDA `sasl` value for kafka.saslMechanism; empty when the chart cannot map it. */}}
{{- define "fanout.keda.sasl" -}}
{{- $map := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" -}}
{{- index $map (.Values.kafka.saslMechanism | default "GSSAPI") | default "" -}}
{{- end -}}

{{/* True when some enabled sink autoscales. */}}
{{- define "fanout.autoscaling" -}}
{{- range $name := include "fanout.enabledSinks" . | fromJsonArray -}}
{{- if (index $.Values.sinks $name).autoscaling.enabled -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* True when the chart makes the KEDA TriggerAuthentication (secured Kafka, none named). */}}
{{- define "fanout.keda.makeAuth" -}}
{{- if and (include "fanout.autoscaling" .) (not .Values.keda.authenticationRef) (ne .Values.kafka.securityProtocol "PLAINTEXT") -}}
true
{{- end -}}
{{- end -}}

{{- define "fanout.keda.authName" -}}
{{- include "fanout.componentName" (dict "root" . "suffix" "kafka-auth") -}}
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
{{- $ch := .Values.sinks.clickhouse -}}
{{- if include "fanout.clickhouseEmbedded" . -}}
{{- if or (gt (int $ch.replicaCount) 1) $ch.autoscaling.enabled -}}
{{- fail "fanout: sinks.clickhouse.mode=embedded keeps its data on one volume opened by one process: set sinks.clickhouse.replicaCount to 1 (or 0 to stop it) and sinks.clickhouse.autoscaling.enabled to false" -}}
{{- end -}}
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
{{- if $a.enabled -}}
{{- if not (include "fanout.hasApi" (dict "root" $ "api" "keda.sh/v1alpha1")) -}}
{{- fail (printf "fanout: sinks.%s.autoscaling.enabled needs KEDA, but the cluster does not serve keda.sh/v1alpha1: install KEDA first, or set autoscaling.enabled=false; to render offline add keda.sh/v1alpha1 to extraApiVersions (or pass --api-versions keda.sh/v1alpha1)" $name) -}}
{{- end -}}
{{- if not $a.partitionCount -}}
{{- fail (printf "fanout: sinks.%s.autoscaling.partitionCount is required when autoscaling is enabled: set it to the number of partitions the consumer group %s-%s shares (more replicas would sit idle)" $name $k.groupPrefix $name) -}}
{{- end -}}
{{- if gt (int $a.minReplicas) (min (int $a.maxReplicas) (int $a.partitionCount)) -}}
{{- fail (printf "fanout: sinks.%s.autoscaling.minReplicas (%d) is greater than maxReplicas capped at partitionCount (%d)" $name (int $a.minReplicas) (min (int $a.maxReplicas) (int $a.partitionCount))) -}}
{{- end -}}
{{- if and $k.topicPattern (eq (int $a.minReplicas) 0) -}}
{{- fail (printf "fanout: sinks.%s.autoscaling.minReplicas=0 with kafka.topicPattern could never wake up: KEDA's kafka scaler takes no pattern, and without a topic it only sees topics the group has committed offsets for (none for a new group, none once Kafka expires an idle group's offsets). Set minReplicas to 1 or more, or list the topics in kafka.topics" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if include "fanout.keda.makeAuth" . -}}
{{- if and (hasPrefix "SASL" $k.securityProtocol) (not (include "fanout.keda.sasl" .)) -}}
{{- fail (printf "fanout: the chart makes the KEDA TriggerAuthentication only for SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (kafka.saslMechanism is %q): make one yourself and name it in keda.authenticationRef" ($k.saslMechanism | default "empty, i.e. GSSAPI")) -}}
{{- end -}}
{{- if and (hasPrefix "SASL" $k.securityProtocol) (not .Values.secrets.existingSecret) (not $k.saslPassword) -}}
{{- fail "fanout: KEDA needs the Kafka SASL password for its lag checks: set secrets.existingSecret (key secrets.keys.kafkaSaslPassword) or kafka.saslPassword" -}}
{{- end -}}
{{- range $key := list "sasl" "tls" -}}
{{- if hasKey $.Values.keda.extraTriggerMetadata $key -}}
{{- fail (printf "fanout: keda.extraTriggerMetadata.%s conflicts with the chart-made TriggerAuthentication, which sets it from kafka.securityProtocol/kafka.saslMechanism (KEDA refuses both): remove it, or name your own TriggerAuthentication in keda.authenticationRef" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.metrics.serviceMonitor.enabled -}}
{{- if not .Values.metrics.service.enabled -}}
{{- fail "fanout: metrics.serviceMonitor.enabled needs metrics.service.enabled=true" -}}
{{- end -}}
{{- if not (include "fanout.hasApi" (dict "root" . "api" "monitoring.coreos.com/v1")) -}}
{{- fail "fanout: metrics.serviceMonitor.enabled needs the Prometheus Operator, but the cluster does not serve monitoring.coreos.com/v1: install its CRDs first, or set metrics.serviceMonitor.enabled=false; to render offline add monitoring.coreos.com/v1 to extraApiVersions (or pass --api-versions monitoring.coreos.com/v1)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.prometheusRule.enabled (not (include "fanout.hasApi" (dict "root" . "api" "monitoring.coreos.com/v1"))) -}}
{{- fail "fanout: prometheusRule.enabled needs the Prometheus Operator, but the cluster does not serve monitoring.coreos.com/v1: install its CRDs first, or set prometheusRule.enabled=false; to render offline add monitoring.coreos.com/v1 to extraApiVersions (or pass --api-versions monitoring.coreos.com/v1)" -}}
{{- end -}}
{{- $b := .Values.backfill -}}
{{- if $b.runId -}}
{{- if not $b.sinks -}}
{{- fail "fanout: backfill.runId is set but backfill.sinks is empty: name the sinks to backfill" -}}
{{- end -}}
{{- range $name := $b.sinks -}}
{{- if not (has $name $enabled) -}}
{{- fail (printf "fanout: backfill.sinks names %q but sinks.%s.enabled is false" $name $name) -}}
{{- end -}}
{{- if and (eq $name "clickhouse") (include "fanout.clickhouseEmbedded" $) -}}
{{- fail "fanout: backfill.sinks names clickhouse, which runs in embedded mode: its chDB data may be opened by one process only, the sink's own pod, so a backfill Job (a second opener) cannot work. Re-read through that pod instead: stop it (sinks.clickhouse.replicaCount=0), move its group back with `fanout offsets reset --sink clickhouse --to <time>`, start it again (docs/DEPLOYMENT.md, Backfill); or use ClickHouse in server mode" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Volumes of a pod running one sink (workload or backfill Job). */}}
{{- define "fanout.volumes" -}}
- name: config
  configMap:
    name: {{ include "fanout.sink.configMapName" . }}
- name: tmp
  emptyDir:
    {{- with .root.Values.tmpDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if include "fanout.mountSecret" .root }}
- name: secrets
  secret:
    secretName: {{ include "fanout.secretName" .root }}
    {{- /* 0440: root and the pods' fsGroup may read (libpq accepts a root-owned key so) */}}
    defaultMode: 288
{{- end }}
{{- if and (eq .sink "clickhouse") (include "fanout.clickhouseEmbedded" .root) .root.Values.sinks.clickhouse.embedded.existingClaim }}
{{- /* Without existingClaim the StatefulSet's volumeClaimTemplates provide chdb-data. */}}
- name: chdb-data
  persistentVolumeClaim:
    claimName: {{ .root.Values.sinks.clickhouse.embedded.existingClaim }}
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
{{- if include "fanout.mountSecret" .root }}
- name: secrets
  mountPath: {{ include "fanout.secretsDir" .root }}
  readOnly: true
{{- end }}
{{- if and (eq .sink "clickhouse") (include "fanout.clickhouseEmbedded" .root) }}
- name: chdb-data
  mountPath: {{ .root.Values.sinks.clickhouse.embedded.dataDir }}
{{- end }}
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Env of the fanout container, as a JSON list: the config path, the pod name as the Kafka static
member id (StatefulSet only), extraEnv, then the sink's env. Secrets are files (the mounted
Secret), never env values.
*/}}
{{- define "fanout.env" -}}
{{- $v := index .root.Values.sinks .sink -}}
{{- $env := list (dict "name" "FANOUT_CONFIG" "value" (include "fanout.configPath" .root)) -}}
{{- if and (eq .role "worker") (eq (include "fanout.sink.workloadKind" .) "StatefulSet") -}}
{{- /* Static membership: the pod keeps its name across restarts, so it rejoins the group without a rebalance. */ -}}
{{- $ref := dict "fieldRef" (dict "apiVersion" "v1" "fieldPath" "metadata.name") -}}
{{- $env = append $env (dict "name" "FANOUT_KAFKA__GROUP_INSTANCE_ID" "valueFrom" $ref) -}}
{{- end -}}
{{- $env = concat $env .root.Values.extraEnv $v.env -}}
{{- $env | toJson -}}
{{- end -}}

{{/* An HTTP probe on the metrics port. Takes (dict "probe" values "path" path). */}}
{{- define "fanout.probe" -}}
httpGet:
  path: {{ .path }}
  port: metrics
{{ toYaml (omit .probe "enabled") }}
{{- end -}}

{{/*
A probe that fails on /healthz or /readyz while a worker stopped by a configuration error waits
its configErrorExitS (fanout's default 180 s) must not end the container first: the worker exits
2 by itself, its reason in the exit code and its last log line, where a kill would show only a
failed probe and a restart. Returns the probe with failureThreshold raised, where needed, to
cover configErrorExitS and two more periods. Takes (dict "probe" probeValues "sink" sinkValues).
*/}}
{{- define "fanout.probe.outlastingConfigErrors" -}}
{{- $period := int (.probe.periodSeconds | default 10) -}}
{{- $exitS := 180 -}}
{{- if hasKey .sink "configErrorExitS" }}{{ $exitS = int (ceil (float64 .sink.configErrorExitS)) }}{{ end -}}
{{- $needed := add (div $exitS $period) 2 -}}
{{- $threshold := max (int (.probe.failureThreshold | default 3)) $needed -}}
{{- toYaml (merge (dict "failureThreshold" $threshold) .probe) -}}
{{- end -}}

{{/*
The pod spec of a sink's workload (role "worker") or of its backfill Job (role "backfill").
Takes (dict "root" $ "sink" name "role" role).
*/}}
{{- define "fanout.podSpec" -}}
{{- $root := .root -}}
{{- $v := index $root.Values.sinks .sink -}}
{{- $worker := eq .role "worker" -}}
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
{{- if $worker }}
terminationGracePeriodSeconds: {{ include "fanout.sink.gracePeriod" . }}
{{- else }}
restartPolicy: Never
terminationGracePeriodSeconds: {{ $root.Values.backfill.terminationGracePeriodSeconds }}
{{- end }}
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
{{- if and $worker $v.topologySpreadConstraints }}
{{- $selector := dict "matchLabels" (include "fanout.sink.selectorLabels" . | fromYaml) }}
{{- $constraints := list }}
{{- range $v.topologySpreadConstraints }}
{{- $each := deepCopy . }}
{{- if not (hasKey $each "labelSelector") }}{{ $_ := set $each "labelSelector" $selector }}{{ end }}
{{- $constraints = append $constraints $each }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- with $v.initContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: fanout
    image: {{ include "fanout.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- if $worker }}
      {{- toYaml (list "run" "--sink" .sink) | nindent 6 }}
      {{- else }}
      {{- $b := $root.Values.backfill }}
      {{- toYaml (list "backfill" "--sink" .sink "--from" (toString $b.from) "--id" $b.runId) | nindent 6 }}
      {{- end }}
    env:
      {{- include "fanout.env" . | fromJsonArray | toYaml | nindent 6 }}
    {{- with $root.Values.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if $worker }}
    ports:
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
    {{- with $root.Values.startupProbe }}
    {{- if .enabled }}
    {{- $probe := include "fanout.probe.outlastingConfigErrors" (dict "probe" . "sink" $v) | fromYaml }}
    startupProbe:
      {{- include "fanout.probe" (dict "probe" $probe "path" "/readyz") | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- with $root.Values.livenessProbe }}
    {{- if .enabled }}
    {{- $probe := include "fanout.probe.outlastingConfigErrors" (dict "probe" . "sink" $v) | fromYaml }}
    livenessProbe:
      {{- include "fanout.probe" (dict "probe" $probe "path" "/healthz") | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- with $root.Values.readinessProbe }}
    {{- if .enabled }}
    readinessProbe:
      {{- include "fanout.probe" (dict "probe" . "path" "/readyz") | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- with (ternary $v.resources $root.Values.backfill.resources $worker) }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $root.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      {{- include "fanout.volumeMounts" . | nindent 6 }}
  {{- if $worker }}
  {{- with $v.sidecars }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- end }}
volumes:
  {{- include "fanout.volumes" . | nindent 2 }}
{{- end -}}

{{/*
Pod template annotations of a sink's workload: checksums of that sink's config.yaml and of the
Secret keys it reads (chart-made Secret only), so a change rolls only the sinks it concerns.
*/}}
{{- define "fanout.sink.checksumAnnotations" -}}
checksum/config: {{ include "fanout.sink.configYaml" . | sha256sum }}
{{- if include "fanout.createSecret" .root }}
{{- $data := include "fanout.secretData" .root | fromJson }}
{{- $mine := dict }}
{{- range $_, $settings := include "fanout.sink.secretFiles" . | fromJson }}
{{- range $_, $path := $settings }}
{{- $key := base $path }}
{{- if hasKey $data $key }}{{ $_ := set $mine $key (index $data $key) }}{{ end }}
{{- end }}
{{- end }}
{{- with $mine }}
checksum/secret: {{ toJson . | sha256sum }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The pod template (metadata and spec) of a sink's Deployment or StatefulSet. */}}
{{- define "fanout.sink.podTemplate" -}}
{{- $v := index .root.Values.sinks .sink -}}
metadata:
  labels:
    {{- $podLabels := merge (include "fanout.sink.labels" . | fromYaml) $v.podLabels .root.Values.podLabels }}
    {{- toYaml $podLabels | nindent 4 }}
  annotations:
    {{- include "fanout.sink.checksumAnnotations" . | nindent 4 }}
    {{- with (merge (dict) $v.podAnnotations .root.Values.podAnnotations) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- include "fanout.podSpec" (dict "root" .root "sink" .sink "role" "worker") | nindent 2 }}
{{- end -}}

{{/*
PromQL label matchers that pick this release's series out of a shared Prometheus:
prometheusRule.selector, or the namespace and the jobs of the sinks' metrics Services (the
Prometheus Operator names a ServiceMonitor's job after the Service).
*/}}
{{- define "fanout.alertSelector" -}}
{{- if .Values.prometheusRule.selector -}}
{{- .Values.prometheusRule.selector -}}
{{- else -}}
{{- $jobs := list -}}
{{- range $sink := include "fanout.enabledSinks" . | fromJsonArray -}}
{{- $jobs = append $jobs (include "fanout.componentName" (dict "root" $ "suffix" (printf "%s-metrics" $sink))) -}}
{{- end -}}
{{- printf "namespace=%q, job=~%q" (include "fanout.namespace" .) (join "|" $jobs) -}}
{{- end -}}
{{- end -}}

{{/*
labels and annotations of one alert: its severity and summary/description, the runbook link
(the runbook section's heading is the alert name), then prometheusRule.additional*.
Takes (dict "root" $ "alert" name "severity" s "summary" text "description" text).
*/}}
{{- define "fanout.alertMeta" -}}
{{- $p := .root.Values.prometheusRule -}}
{{- $runbook := printf "%s#%s" $p.runbookBaseUrl (lower .alert) -}}
labels:
  {{- toYaml (merge (dict "severity" .severity) $p.additionalLabels) | nindent 2 }}
annotations:
  {{- toYaml (merge (dict "summary" .summary "description" .description "runbook_url" $runbook) $p.additionalAnnotations) | nindent 2 }}
{{- end -}}
