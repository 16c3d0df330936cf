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
     (retrievalModels.enabled, docs/adr/0008). Takes (dict "ctx" . "resources" ...), and
     "gpu" to decide for a pod that runs only part of the graph (Ray workers). */}}
{{- define "puls.modelResources" -}}
{{- $resources := deepCopy (.resources | default dict) -}}
{{- if hasKey . "gpu" | ternary .gpu .ctx.Values.retrievalModels.enabled -}}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" 1) ($resources.requests | default dict)) -}}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" 1) ($resources.limits | default dict)) -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* nodeSelector and tolerations of a pod, with the GPU node group's added when it runs the
     retrieval models. Takes (dict "ctx" . "nodeSelector" ... "tolerations" ...), and "gpu"
     as puls.modelResources does. */}}
{{- define "puls.podPlacement" -}}
{{- $nodeSelector := deepCopy (.nodeSelector | default dict) -}}
{{- $tolerations := .tolerations | default list -}}
{{- if hasKey . "gpu" | ternary .gpu .ctx.Values.retrievalModels.enabled -}}
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

{{/* api.runtime, checked: `deployment` or `rayservice`. */}}
{{- define "puls.runtime" -}}
{{- $runtime := .Values.api.runtime | default "deployment" -}}
{{- if not (has $runtime (list "deployment" "rayservice")) -}}
{{- fail (printf "api.runtime %q: use deployment or rayservice" $runtime) -}}
{{- end -}}
{{- $runtime -}}
{{- end -}}

{{/* The Ray Serve variables `puls serve --ray` sets (serving/ray_start.py `ray_serve_env`,
     Serve's Python proxy): Ray reads them at import in every Ray process, so every Ray pod
     carries them (tests/test_deploy_config.py compares the two). */}}
{{- define "puls.rayServeEnv" -}}
- name: RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD
  value: "0"
- name: RAY_SERVE_PROXY_USE_GRPC
  value: "1"
{{- end -}}

{{/* The pod template of a Ray node of the RayService (rayservice.yaml): our image, the
     ConfigMap, the Secret and the Ray Serve variables in its environment; GPU, GPU placement
     and the models volume on the GPU workers only. KubeRay writes the container's command
     (`ray start ...`). Takes (dict "ctx" . "name" ... "resources" ... "gpu" bool). */}}
{{- define "puls.rayPod" -}}
{{- $ctx := .ctx -}}
metadata:
  labels:
    {{- include "puls.labels" $ctx | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | sha256sum }}
spec:
  {{- with $ctx.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $ctx.Values.podSecurityContext | nindent 4 }}
  {{- include "puls.podPlacement" (dict "ctx" $ctx "nodeSelector" $ctx.Values.api.nodeSelector "tolerations" $ctx.Values.api.tolerations "gpu" .gpu) | nindent 2 }}
  containers:
    - name: {{ .name }}
      image: {{ include "puls.image" $ctx }}
      imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
      envFrom:
        - configMapRef:
            name: {{ include "puls.fullname" $ctx }}-config
      env:
        {{- include "puls.secretEnv" $ctx | nindent 8 }}
        {{- include "puls.rayServeEnv" $ctx | nindent 8 }}
      resources:
        {{- include "puls.modelResources" (dict "ctx" $ctx "resources" .resources "gpu" .gpu) | nindent 8 }}
      securityContext:
        {{- toYaml $ctx.Values.containerSecurityContext | nindent 8 }}
      # Ray keeps its sessions, logs and sockets under /tmp/ray.
      volumeMounts:
        - name: data
          mountPath: /var/lib/puls
        - name: tmp
          mountPath: /tmp
        {{- if .gpu }}
        {{- include "puls.modelsMount" $ctx | nindent 8 }}
        {{- end }}
  volumes:
    - name: data
      emptyDir:
        sizeLimit: 1Gi
    - name: tmp
      emptyDir:
        sizeLimit: 4Gi
    {{- if .gpu }}
    {{- include "puls.modelsVolume" $ctx | nindent 4 }}
    {{- end }}
{{- end -}}
