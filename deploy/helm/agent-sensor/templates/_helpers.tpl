{{/* The namespace of every object: the value, or the release's when it is empty. */}}
{{- define "agent-sensor.namespace" -}}
{{- .Values.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* The base's one label (no chart or release labels, so the default render equals it). */}}
{{- define "agent-sensor.labels" -}}
app.kubernetes.io/name: agent-sensor
{{- end -}}
