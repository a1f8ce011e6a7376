{{/*
Names. The full name is cut to 52 characters: StatefulSet pods add "-<ordinal>"
and a controller-revision-hash label that must stay within 63.
*/}}
{{- define "logs-distributor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "logs-distributor.fullname" -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- $full := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $full = .Values.fullnameOverride -}}
{{- else if contains $name .Release.Name -}}
{{- $full = .Release.Name -}}
{{- else -}}
{{- $full = printf "%s-%s" .Release.Name $name -}}
{{- end -}}
{{- $full | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "logs-distributor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "logs-distributor.labels" -}}
helm.sh/chart: {{ include "logs-distributor.chart" . }}
app.kubernetes.io/name: {{ include "logs-distributor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: logs-distributor
{{- end -}}

{{/*
The common labels plus `.extra` (a dict), as YAML; on a clash the common label
wins, so user-supplied labels can neither duplicate nor override them.
*/}}
{{- define "logs-distributor.labelsWith" -}}
{{- $labels := include "logs-distributor.labels" .root | fromYaml -}}
{{- range $key, $value := .extra -}}
{{- if not (hasKey $labels $key) -}}
{{- $_ := set $labels $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* Selector of the distributor pods (never changes across upgrades). */}}
{{- define "logs-distributor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logs-distributor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: distributor
{{- end -}}

{{- define "logs-distributor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "logs-distributor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "logs-distributor.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
Whole seconds (rounded up) of a duration written as the binary's config takes
it: one or more <integer><unit> with unit h, m, s or ms ("10s", "1m30s", "500ms").
Takes (list KEY VALUE); KEY names the value in the error.
*/}}
{{- define "logs-distributor.seconds" -}}
{{- $key := index . 0 -}}
{{- $text := toString (index . 1) -}}
{{- $parts := regexFindAll "[0-9]+(ms|h|m|s)" $text -1 -}}
{{- if or (eq $text "") (ne (join "" $parts) $text) -}}
{{- fail (printf "%s: cannot read %q as a duration: write it like 10s, 1m30s or 500ms" $key $text) -}}
{{- end -}}
{{- $ms := 0 -}}
{{- range $parts -}}
{{- if hasSuffix "ms" . -}}
{{- $ms = add $ms (trimSuffix "ms" . | atoi) -}}
{{- else if hasSuffix "h" . -}}
{{- $ms = add $ms (mul (trimSuffix "h" . | atoi) 3600000) -}}
{{- else if hasSuffix "m" . -}}
{{- $ms = add $ms (mul (trimSuffix "m" . | atoi) 60000) -}}
{{- else -}}
{{- $ms = add $ms (mul (trimSuffix "s" . | atoi) 1000) -}}
{{- end -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{- define "logs-distributor.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $drain := include "logs-distributor.seconds" (list "config.shutdown.drain_timeout" .Values.config.shutdown.drain_timeout) | atoi -}}
{{- $handoff := include "logs-distributor.seconds" (list "config.handoff.timeout" .Values.config.handoff.timeout) | atoi -}}
{{- add .Values.preStopSleepSeconds $drain $handoff .Values.shutdownMarginSeconds -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* The label that ties an Analyzer to a release (the default analyzerSelector). */}}
{{- define "logs-distributor.releaseLabel" -}}
logs-distributor.dev/release: {{ .Release.Name }}
{{- end -}}

{{/* The label selector of this release's Analyzers (LD_ANALYZER_SELECTOR). */}}
{{- define "logs-distributor.analyzerSelector" -}}
{{- if kindIs "invalid" .Values.analyzerSelector -}}
{{- printf "logs-distributor.dev/release=%s" .Release.Name -}}
{{- else -}}
{{- .Values.analyzerSelector -}}
{{- end -}}
{{- end -}}

{{/* The leader Lease of this release (LD_LEASE_NAME). */}}
{{- define "logs-distributor.leaseName" -}}
{{- printf "%s-leader" (include "logs-distributor.fullname" .) -}}
{{- end -}}

{{/* The configuration file the distributor reads (LD_CONFIG). */}}
{{- define "logs-distributor.config" -}}
{{- toYaml .Values.config -}}
{{- end -}}

{{/* Name of the reference analyzer Deployment and Service of analyzer entry `.analyzer`. */}}
{{- define "logs-distributor.referenceName" -}}
{{- printf "%s-%s" (include "logs-distributor.fullname" .root) .analyzer.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Whether analyzer entry `.analyzer` is served by a reference analyzer. */}}
{{- define "logs-distributor.isReference" -}}
{{- if and .root.Values.referenceAnalyzers.enabled (hasKey .analyzer "simulated") (not .analyzer.endpoint) -}}true{{- end -}}
{{- end -}}

{{/* What tells one reference analyzer's objects apart, beyond the common labels. */}}
{{- define "logs-distributor.referenceLabels" -}}
app.kubernetes.io/component: reference-analyzer
logs-distributor.dev/analyzer: {{ .analyzer.name }}
{{- end -}}

{{/* Selector of one reference analyzer's pods. */}}
{{- define "logs-distributor.referenceSelectorLabels" -}}
app.kubernetes.io/name: {{ include "logs-distributor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{ include "logs-distributor.referenceLabels" . }}
{{- end -}}
