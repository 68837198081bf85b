{{/* Names and labels. */}}
{{- define "obleth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "obleth.fullname" -}}
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

{{- define "obleth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "obleth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "obleth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "obleth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "obleth.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "obleth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "obleth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "obleth.workloadKind" -}}
{{- if .Values.wal.persistence.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/*
The most pods the release can have: what budget.local_share is derived from. While Redis
is unreachable each pod enforces local_share of every limit on its own, so with
1 / (most pods) the cluster never exceeds a limit.
*/}}
{{- define "obleth.maxPods" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
obleth's configuration: .Values.config plus what the chart decides, as TOML. Rendered by
hand rather than with toToml: Helm reads every number in values as a float, and toToml
would write max_in_flight = 64.0, which obleth refuses for an integer key.
*/}}
{{- define "obleth.config" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $listen := dict "data" "0.0.0.0:8080" "admin" "0.0.0.0:9090" "metrics" "0.0.0.0:9091" }}
{{- $_ := set $config "listen" (merge $listen (default dict (get $config "listen"))) }}
{{- $database := default dict (get $config "database") }}
{{- $_ := set $database "migrate" false }}
{{- $_ := set $config "database" $database }}
{{- $ledger := default dict (get $config "ledger") }}
{{- $_ := set $ledger "wal_dir" "/var/lib/obleth/wal" }}
{{- if eq (default "sqlite" (get $ledger "backend")) "sqlite" }}
{{- $_ := set $ledger "sqlite_url" (default "sqlite:///var/lib/obleth/usage.db" (get $ledger "sqlite_url")) }}
{{- end }}
{{- $_ := set $config "ledger" $ledger }}
{{- $budget := default dict (get $config "budget") }}
{{- if not (hasKey $budget "local_share") }}
{{- $_ := set $budget "local_share" (divf 1 (include "obleth.maxPods" . | float64)) }}
{{- end }}
{{- $_ := set $config "budget" $budget }}
{{- range $section := keys $config | sortAlpha }}
{{- $keys := get $config $section }}
{{- if not (kindIs "map" $keys) }}
{{- fail (printf "config.%s must be a section (a map of keys)" $section) }}
{{- end }}
[{{ $section }}]
{{- range $key := keys $keys | sortAlpha }}
{{ $key }} = {{ include "obleth.tomlValue" (get $keys $key) }}
{{- end }}
{{ end }}
{{- end }}

{{- define "obleth.tomlValue" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "obleth.tomlValue" $e }}{{ end }}]
{{- else -}}
{{ fail (printf "config: cannot write %v (%s) as TOML" . (kindOf .)) }}
{{- end -}}
{{- end }}

{{/*
Environment variables from the existing Secret: .names is a list of [values key, variable]
pairs; a pair whose key is empty in existingSecret.keys is left out.
*/}}
{{- define "obleth.secretEnv" -}}
{{- $root := .root }}
{{- range .names }}
{{- $key := index $root.Values.existingSecret.keys (index . 0) }}
{{- if $key }}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.existingSecret.name }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pods' and the migration Job's security context. */}}
{{- define "obleth.containerSecurityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end }}
