{{/* Names and labels shared by every template. */}}

{{- define "puls.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "puls.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: puls
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "puls.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-%s" (include "puls.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "puls.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-gpu" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{- define "puls.vllmName" -}}
{{- printf "%s-vllm" (include "puls.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "puls.modelsClaim" -}}
{{- default (printf "%s-models" (include "puls.fullname" .)) .Values.models.existingClaim -}}
{{- end -}}

{{/* PULS_LLM_URL: the in-chart engine's Service, or an external server. */}}
{{- define "puls.llmUrl" -}}
{{- if .Values.llm.url -}}
{{- .Values.llm.url -}}
{{- else if eq .Values.llm.backend "vllm" -}}
{{- printf "http://%s:%d/v1" (include "puls.vllmName" .) (int .Values.vllm.port) -}}
{{- else -}}
{{- fail (printf "llm.backend %q renders no engine: set llm.url" .Values.llm.backend) -}}
{{- end -}}
{{- end -}}

{{/* The Secret's keys as env, for every container that reaches a store or the engine.
     All but the database may be absent (Milvus or vLLM without auth, no Redis: each API pod
     then keeps its own sessions, cache and budget counters). */}}
{{- define "puls.secretEnv" -}}
{{- range $key := list "PULS_DATABASE_URL" "PULS_MILVUS_TOKEN" "PULS_LLM_API_KEY" "PULS_REDIS_URL" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secret.name }}
      key: {{ $key }}
      {{- if ne $key "PULS_DATABASE_URL" }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* Container resources, with one GPU added when the pod runs the retrieval models
     (retrievalModels.enabled, docs/adr/0008). Takes (dict "ctx" . "resources" ...). */}}
{{- define "puls.modelResources" -}}
{{- $resources := deepCopy (.resources | default dict) -}}
{{- if .ctx.Values.retrievalModels.enabled -}}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" 1) ($resources.requests | default dict)) -}}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" 1) ($resources.limits | default dict)) -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* nodeSelector and tolerations of a pod, with the GPU node group's added when it runs the
     retrieval models. Takes (dict "ctx" . "nodeSelector" ... "tolerations" ...). */}}
{{- define "puls.podPlacement" -}}
{{- $nodeSelector := deepCopy (.nodeSelector | default dict) -}}
{{- $tolerations := .tolerations | default list -}}
{{- if .ctx.Values.retrievalModels.enabled -}}
{{- $nodeSelector = merge $nodeSelector .ctx.Values.retrievalModels.nodeSelector -}}
{{- $tolerations = concat $tolerations .ctx.Values.retrievalModels.tolerations -}}
{{- end -}}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The models volume, read-only, for pods that run the retrieval models. */}}
{{- define "puls.modelsVolume" -}}
{{- if .Values.retrievalModels.enabled }}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "puls.modelsClaim" . }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* Its mount at /models, where retrievalModels' paths point. */}}
{{- define "puls.modelsMount" -}}
{{- if .Values.retrievalModels.enabled }}
- name: models
  mountPath: /models
  readOnly: true
{{- end }}
{{- end -}}
