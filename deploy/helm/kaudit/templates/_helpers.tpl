{{/* Names and labels shared by every object of the chart. */}}

{{- define "kaudit.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kaudit.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kaudit.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kaudit.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kaudit.gatewayHost" -}}
{{- .Values.gateway.config.advertised_host | default (printf "%s-gateway.%s.svc" (include "kaudit.fullname" .) .Release.Namespace) -}}
{{- end -}}

{{/* The gateway's configuration: the shared one with its `gateway:` section added. */}}
{{- define "kaudit.gatewayConfig" -}}
{{- $gateway := merge (dict "advertised_host" (include "kaudit.gatewayHost" .)) (omit .Values.gateway.config "advertised_host") -}}
{{- toYaml (merge (dict "gateway" $gateway) (deepCopy .Values.config)) -}}
{{- end -}}

{{- define "kaudit.listenPort" -}}
{{- splitList ":" . | last -}}
{{- end -}}

{{/* Environment and volumes every kaudit container has. */}}
{{- define "kaudit.env" -}}
- name: KAUDIT_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: KAUDIT_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end -}}

{{- define "kaudit.secretMounts" -}}
{{- range $i, $f := .Values.secretFiles }}
- name: secret-{{ $i }}
  mountPath: {{ $f.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kaudit.secretVolumes" -}}
{{- range $i, $f := .Values.secretFiles }}
- name: secret-{{ $i }}
  secret:
    secretName: {{ $f.secretName }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{/* The port of /metrics, /healthz and /readyz: config.metrics.listen's. */}}
{{- define "kaudit.metricsPort" -}}
{{- $metrics := .Values.config.metrics | default dict -}}
{{- include "kaudit.listenPort" (required "config.metrics.listen is required: the probes and the ServiceMonitor use its port" $metrics.listen) -}}
{{- end -}}
