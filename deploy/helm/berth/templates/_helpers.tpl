{{/*
Names and labels.
*/}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: registry
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "berth.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Where the pod finds its files.
*/}}
{{- define "berth.configDir" -}}/etc/berth/config{{- end }}
{{- define "berth.tlsDir" -}}/etc/berth/tls{{- end }}

{{- define "berth.scheme" -}}
{{- if .Values.tls.secretName }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
Secrets: which exist, their names and keys. "true" or "" (empty = false).
*/}}
{{- define "berth.tokenAuth" -}}
{{- if eq .Values.auth.mode "token" }}true{{ end }}
{{- end }}

{{- define "berth.authSecretName" -}}
{{- printf "%s-auth" (include "berth.fullname" .) }}
{{- end }}

{{/* The chart's auth Secret is rendered when it holds the admin password or the keys. */}}
{{- define "berth.chartAuthSecret" -}}
{{- if and (include "berth.tokenAuth" .) (or (not .Values.auth.existingSecret) (not .Values.auth.signingKeysExistingSecret)) }}true{{ end }}
{{- end }}

{{- define "berth.adminSecretName" -}}
{{- .Values.auth.existingSecret | default (include "berth.authSecretName" .) }}
{{- end }}

{{- define "berth.adminSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}admin-password{{ end }}
{{- end }}

{{- define "berth.keysSecretName" -}}
{{- .Values.auth.signingKeysExistingSecret | default (include "berth.authSecretName" .) }}
{{- end }}

{{/* The data of the chart's auth Secret in the cluster (base64 values), as JSON; {} on install and in helm template. */}}
{{- define "berth.existingAuthData" -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "berth.authSecretName" .) | default dict }}
{{- dig "data" dict $s | toJson }}
{{- end }}

{{/*
A value generated once per render: the Secret and the Deployment's
checksum/secret (which renders the Secret again) must see the same random
values, or the first helm upgrade after the install would roll the pods.
The values are memoized in a map of the render's .Values (never stored in
the release). Call with (list $ NAME): NAME "admin-password" or a key file name.
*/}}
{{- define "berth.generated" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- if not (hasKey $root.Values "_berthGenerated") }}
{{- $_ := set $root.Values "_berthGenerated" dict }}
{{- end }}
{{- $memo := get $root.Values "_berthGenerated" }}
{{- if not (hasKey $memo $name) }}
{{- if eq $name "admin-password" }}
{{- $_ := set $memo $name (randAlphaNum 24 | b64enc) }}
{{- else }}
{{- $_ := set $memo $name (genPrivateKey "ecdsa" | b64enc) }}
{{- end }}
{{- end }}
{{- get $memo $name }}
{{- end }}

{{/*
auth.signingKeys without the entries set to null or "" (how a key is
dropped, e.g. with helm upgrade --reuse-values --set 'auth.signingKeys.old\.pem=null'), as JSON.
*/}}
{{- define "berth.signingKeysGiven" -}}
{{- $keys := dict }}
{{- range $name, $pem := .Values.auth.signingKeys }}
{{- if $pem }}
{{- $_ := set $keys $name $pem }}
{{- end }}
{{- end }}
{{- $keys | toJson }}
{{- end }}

{{/*
The signing key files of the chart's auth Secret, as a JSON list: the names
given in auth.signingKeys, else the *.pem keys already in the Secret (so an
upgrade keeps them), else key-0001.pem (generated).
*/}}
{{- define "berth.signingKeyFiles" -}}
{{- $files := list }}
{{- $given := include "berth.signingKeysGiven" . | fromJson }}
{{- if $given }}
{{- $files = keys $given | sortAlpha }}
{{- else }}
{{- range $name, $_ := include "berth.existingAuthData" . | fromJson }}
{{- if hasSuffix ".pem" $name }}
{{- $files = append $files $name }}
{{- end }}
{{- end }}
{{- if not $files }}
{{- $files = list "key-0001.pem" }}
{{- end }}
{{- end }}
{{- $files | sortAlpha | toJson }}
{{- end }}

{{- define "berth.storageSecretName" -}}
{{- printf "%s-storage" (include "berth.fullname" .) }}
{{- end }}

{{- define "berth.s3Credentials" -}}
{{- if or .Values.s3.existingSecret .Values.s3.accessKeyId }}true{{ end }}
{{- end }}

{{/* The chart's storage Secret is rendered when it holds the DSN or S3 keys. */}}
{{- define "berth.chartStorageSecret" -}}
{{- if eq .Values.mode "s3-postgres" }}
{{- if or (not .Values.postgres.existingSecret) (and .Values.s3.accessKeyId (not .Values.s3.existingSecret)) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
berth settings the chart writes itself, and those it refuses in .Values.config.
*/}}
{{- define "berth.managedSettings" -}}
{{- list "addr" "data_dir" "keys_dir" "auth" "tls_cert" "tls_key" "shutdown_timeout" "shutdown_delay" "storage" "metadata" "s3_bucket" "s3_prefix" "s3_region" "s3_endpoint" "s3_path_style" "s3_redirect" | toJson }}
{{- end }}

{{/* Settings that are secrets: never in the ConfigMap. */}}
{{- define "berth.secretSettings" -}}
{{- list "admin_password" "postgres_dsn" "ldap_bind_password" "oidc_client_secret" | toJson }}
{{- end }}

{{/* Settings .Values.config may hold (docs/configuration.md). */}}
{{- define "berth.userSettings" -}}
{{- list "external_url" "trusted_proxies" "token_ttl" "identity_tokens" "log_level" "log_format" "max_manifest_size" "upload_ttl" "body_timeout" "gc_interval" "gc_grace" "max_upload_sessions" "webhook_attempts" "webhook_backoff" "webhook_backoff_max" "metrics_addr" "metrics" "metrics_public" "console" "tracing" "audit_log" "audit_retention" "debug_addr" "postgres_conns" "postgres_cache_mib" "ldap_url" "ldap_start_tls" "ldap_ca_cert" "ldap_bind_dn" "ldap_user_base" "ldap_user_filter" "ldap_user_attr" "ldap_group_base" "ldap_group_filter" "ldap_group_attr" "oidc_issuer" "oidc_client_id" "oidc_scopes" "oidc_username_claim" "oidc_groups_claim" "oidc_ca_cert" "oidc_name" "oidc_session_ttl" "sso_recheck" "local_login" | toJson }}
{{- end }}

{{/* One setting's value as a quoted YAML string (numbers from values files arrive as float64). */}}
{{- define "berth.settingValue" -}}
{{- if kindIs "float64" . }}
{{- . | int64 | toString | quote }}
{{- else if kindIs "invalid" . }}
{{- "" | quote }}
{{- else }}
{{- . | toString | quote }}
{{- end }}
{{- end }}

{{/*
berth.yaml: every setting of the ConfigMap, none of them secret.
*/}}
{{- define "berth.settings" -}}
{{- $s := dict "addr" ":5000" "data_dir" "/data" "auth" .Values.auth.mode "shutdown_timeout" (printf "%ds" (int .Values.shutdownTimeoutSeconds)) "shutdown_delay" (printf "%ds" (int .Values.shutdownDelaySeconds)) }}
{{- if include "berth.tokenAuth" . }}
{{- $_ := set $s "keys_dir" .Values.auth.keysDir }}
{{- end }}
{{- if eq .Values.mode "embedded" }}
{{- $_ := set $s "storage" "filesystem" }}
{{- $_ := set $s "metadata" "sqlite" }}
{{- else }}
{{- $_ := set $s "storage" "s3" }}
{{- $_ := set $s "s3_bucket" .Values.s3.bucket }}
{{- range $k, $v := dict "s3_prefix" .Values.s3.prefix "s3_region" .Values.s3.region "s3_endpoint" .Values.s3.endpoint }}
{{- if $v }}
{{- $_ := set $s $k $v }}
{{- end }}
{{- end }}
{{- $_ := set $s "s3_path_style" (ternary "true" "false" (.Values.s3.pathStyle | toString | eq "true")) }}
{{- $_ := set $s "s3_redirect" (ternary "true" "false" (.Values.s3.redirect | toString | eq "true")) }}
{{- $_ := set $s "metadata" "postgres" }}
{{- end }}
{{- if .Values.tls.secretName }}
{{- $_ := set $s "tls_cert" (printf "%s/tls.crt" (include "berth.tlsDir" .)) }}
{{- $_ := set $s "tls_key" (printf "%s/tls.key" (include "berth.tlsDir" .)) }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- $_ := set $s "external_url" (printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host) }}
{{- if .Values.ingress.trustedProxies }}
{{- $_ := set $s "trusted_proxies" .Values.ingress.trustedProxies }}
{{- end }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $s "metrics_addr" (printf ":%d" (int .Values.metrics.port)) }}
{{- end }}
{{- range $k, $v := .Values.config }}
{{- $_ := set $s $k $v }}
{{- end }}
{{- range $k, $v := $s }}
{{ $k }}: {{ include "berth.settingValue" $v }}
{{- end }}
{{- end }}

{{/*
Validation: fails the install, upgrade or template with a message.
*/}}
{{- define "berth.validate" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: the ServiceMonitor scrapes the metrics port" }}
{{- end }}
{{- $modes := list "embedded" "s3-postgres" }}
{{- if not (has .Values.mode $modes) }}
{{- fail (printf "mode must be \"embedded\" or \"s3-postgres\", not %q" (toString .Values.mode)) }}
{{- end }}
{{- if not (has .Values.auth.mode (list "token" "none")) }}
{{- fail (printf "auth.mode must be \"token\" or \"none\", not %q" (toString .Values.auth.mode)) }}
{{- end }}
{{- if eq .Values.mode "embedded" }}
{{- if ne (int .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount is %v, but mode embedded runs exactly 1 replica: berth locks its data directory (SQLite and blobs on one volume). For several replicas use mode s3-postgres." .Values.replicaCount) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs mode s3-postgres: mode embedded runs exactly 1 replica (berth locks its data directory), so it cannot be autoscaled." }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- fail "podDisruptionBudget.enabled needs mode s3-postgres: mode embedded runs exactly 1 replica, and a budget for it would only block node drains." }}
{{- end }}
{{- else }}
{{- if lt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount must be at least 1" }}
{{- end }}
{{- if not .Values.s3.bucket }}
{{- fail "mode s3-postgres needs s3.bucket" }}
{{- end }}
{{- if and (not .Values.postgres.dsn) (not .Values.postgres.existingSecret) }}
{{- fail "mode s3-postgres needs postgres.dsn or postgres.existingSecret (a Secret holding the DSN)" }}
{{- end }}
{{- if and (not .Values.s3.existingSecret) (ne (empty .Values.s3.accessKeyId) (empty .Values.s3.secretAccessKey)) }}
{{- fail "set both s3.accessKeyId and s3.secretAccessKey, or neither (the AWS SDK's default chain: IRSA, instance role...)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage" }}
{{- end }}
{{- end }}
{{- $managed := include "berth.managedSettings" . | fromJsonArray }}
{{- $secret := include "berth.secretSettings" . | fromJsonArray }}
{{- $user := include "berth.userSettings" . | fromJsonArray }}
{{- range $k, $_ := .Values.config }}
{{- if has $k $secret }}
{{- fail (printf "config.%s is a secret and the ConfigMap holds none: use auth.adminPassword / auth.existingSecret, postgres.dsn / postgres.existingSecret, or for ldap_bind_password and oidc_client_secret extraEnv BERTH_LDAP_BIND_PASSWORD / BERTH_OIDC_CLIENT_SECRET with valueFrom a Secret" $k) }}
{{- else if has $k $managed }}
{{- fail (printf "config.%s is set by the chart: use mode, auth, s3, tls, shutdownTimeoutSeconds, shutdownDelaySeconds instead (see values.yaml)" $k) }}
{{- else if not (has $k $user) }}
{{- fail (printf "config.%s is not a berth setting (known: %s)" $k (join ", " $user)) }}
{{- end }}
{{- end }}
{{- if le (int .Values.shutdownTimeoutSeconds) 0 }}
{{- fail "shutdownTimeoutSeconds must be positive" }}
{{- end }}
{{- if lt (int .Values.shutdownDelaySeconds) 0 }}
{{- fail "shutdownDelaySeconds must not be negative" }}
{{- end }}
{{- if and .Values.terminationGracePeriodSeconds (le (int .Values.terminationGracePeriodSeconds) (add (int .Values.shutdownTimeoutSeconds) (int .Values.shutdownDelaySeconds))) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed shutdownDelaySeconds + shutdownTimeoutSeconds (%v + %v), or Kubernetes kills berth before its in-flight requests finish" .Values.terminationGracePeriodSeconds .Values.shutdownDelaySeconds .Values.shutdownTimeoutSeconds) }}
{{- end }}
{{- range $name, $pem := include "berth.signingKeysGiven" . | fromJson }}
{{- if or (not (hasSuffix ".pem" $name)) (contains "/" $name) }}
{{- fail (printf "auth.signingKeys: %q must be a file name ending in .pem" $name) }}
{{- end }}
{{- if not (contains "PRIVATE KEY" (toString $pem)) }}
{{- fail (printf "auth.signingKeys.%s is not a PEM private key" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host" }}
{{- end }}
{{- end }}
