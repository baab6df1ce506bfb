{{/* Names, labels and shared snippets. Every object is named <fullname>-<component>. */}}

{{- define "fairprice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fairprice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "crawler") */}}
{{- define "fairprice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fairprice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A pod selector of some of the release's components: (dict "root" $ "components" list) */}}
{{- define "fairprice.componentsSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "fairprice.name" .root }}
  app.kubernetes.io/instance: {{ .root.Release.Name }}
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: {{ toJson .components }}}
{{- end -}}

{{- define "fairprice.labels" -}}
{{ include "fairprice.selectorLabels" . }}
app.kubernetes.io/part-of: fairprice
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* registry/repository:tag of a fairprice service: (dict "root" $ "image" .Values.crawler.image) */}}
{{- define "fairprice.image" -}}
{{- $registry := default .root.Values.image.registry .image.registry -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) .image.tag -}}
{{- if $registry -}}{{ printf "%s/%s:%s" $registry .image.repository $tag }}{{- else -}}{{ printf "%s:%s" .image.repository $tag }}{{- end -}}
{{- end -}}

{{/* registry/repository:tag of a third-party image */}}
{{- define "fairprice.thirdPartyImage" -}}
{{- if .registry -}}{{ printf "%s/%s:%s" .registry .repository .tag }}{{- else -}}{{ printf "%s:%s" .repository .tag }}{{- end -}}
{{- end -}}

{{- define "fairprice.natsTlsSecret" -}}
{{- required "nats.tls.existingSecret (tls.crt, tls.key, ca.crt) is required with nats.tls.enabled" .Values.nats.tls.existingSecret -}}
{{- end -}}

{{/* NATS client URLs as a JSON list, the form FAIRPRICE_NATS__SERVERS takes */}}
{{- define "fairprice.natsServers" -}}
{{- if .Values.nats.enabled -}}
{{- list (printf "nats://%s-nats:4222" (include "fairprice.fullname" .)) | toJson -}}
{{- else -}}
{{- if not .Values.nats.servers }}{{ fail "nats.servers is required when nats.enabled is false" }}{{ end -}}
{{- .Values.nats.servers | toJson -}}
{{- end -}}
{{- end -}}

{{- define "fairprice.influxUrl" -}}
{{- if .Values.influxdb.enabled -}}
{{- printf "http://%s-influxdb:8086" (include "fairprice.fullname" .) -}}
{{- else -}}
{{- required "influxdb.url is required when influxdb.enabled is false" .Values.influxdb.url -}}
{{- end -}}
{{- end -}}

{{- define "fairprice.influxSecret" -}}
{{- default (printf "%s-influxdb" (include "fairprice.fullname" .)) .Values.influxdb.auth.existingSecret -}}
{{- end -}}

{{- define "fairprice.natsSecret" -}}
{{- default (printf "%s-nats-users" (include "fairprice.fullname" .)) .Values.nats.auth.existingSecret -}}
{{- end -}}

{{/* The NATS users of files/nats-users.conf (generated from fairprice.common.nats_permissions),
     lower case: the Secret's keys; each password is the NATS pod's NATS_<USER>_PASSWORD. */}}
{{- define "fairprice.natsUsers" -}}
{{- range regexFindAll "NATS_[A-Z]+_PASSWORD" (.Files.Get "files/nats-users.conf") -1 }}
{{ . | trimPrefix "NATS_" | trimSuffix "_PASSWORD" | lower }}
{{- end }}
{{- end -}}

{{- define "fairprice.grafanaSecret" -}}
{{- default (printf "%s-grafana" (include "fairprice.fullname" .)) .Values.grafana.existingSecret -}}
{{- end -}}

{{/* A password kept across upgrades: the value, else the one already in the Secret, else a new
     random one. (dict "root" $ "secret" name "key" key "value" .Values...) */}}
{{- define "fairprice.password" -}}
{{- if .value -}}
{{- .value | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (index $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum 24 | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The probes every fairprice service has on its one HTTP port */}}
{{- define "fairprice.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* The TOML config of one service: shared settings + its own section with the HTTP port.
     (dict "root" $ "section" "crawler" "settings" dict) */}}
{{- define "fairprice.serviceConfig" -}}
{{- $own := mustMergeOverwrite (dict "http" (dict "port" 8080)) (deepCopy .settings) -}}
{{- $_ := set $own "http" (mustMergeOverwrite (deepCopy (default (dict) (get $own "http"))) (dict "port" 8080)) -}}
{{- $config := mustMergeOverwrite (deepCopy .root.Values.settings) (dict .section $own) -}}
{{- include "fairprice.toml" (dict "table" $config "path" "") | trim -}}
{{- end -}}

{{/* A map as TOML. Helm reads every number in values as a float, and toToml would write
     `replicas = 1.0`; here a number with no fraction is written as an integer. */}}
{{- define "fairprice.toml" -}}
{{- $path := .path -}}
{{- range $key, $value := .table }}
{{- if not (kindIs "map" $value) }}
{{ include "fairprice.tomlKey" $key }} = {{ include "fairprice.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .table }}
{{- if kindIs "map" $value }}
{{- $table := ternary (include "fairprice.tomlKey" $key) (printf "%s.%s" $path (include "fairprice.tomlKey" $key)) (eq $path "") }}

[{{ $table }}]
{{- include "fairprice.toml" (dict "table" $value "path" $table) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "fairprice.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end -}}
{{- end -}}

{{- define "fairprice.tomlValue" -}}
{{- if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "fairprice.tomlValue" $item }}{{ end }}]
{{- else if kindIs "map" . -}}
{ {{- range $i, $key := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ include "fairprice.tomlKey" $key }} = {{ include "fairprice.tomlValue" (index $ $key) }}{{ end -}} }
{{- else -}}{{ fail (printf "settings: cannot write %v (%s) as TOML" . (kindOf .)) }}
{{- end -}}
{{- end -}}

{{/*
Whether to create a Prometheus Operator object of kind .kind: its value .enabled is true, or
"auto" and the cluster serves the kind (monitoring.coreos.com/v1; `helm template` needs
`--api-versions monitoring.coreos.com/v1/<Kind>` to see it). Prints "true" or nothing.
*/}}
{{- define "fairprice.prometheusOperator" -}}
{{- $enabled := toString .enabled -}}
{{- $served := .root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind) -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") $served) -}}true{{- end -}}
{{- end -}}
