{{/* The settings the chart derives from its other values (llm, retrievalModels,
     rayService): the ConfigMap writes them, then `config`, which may not set them again. */}}
{{- define "puls.derivedConfig" -}}
PULS_DATA_DIR: /var/lib/puls
PULS_LLM_URL: {{ include "puls.llmUrl" . | quote }}
PULS_LLM_MODEL: {{ .Values.llm.servedModelName | quote }}
{{- with .Values.retrievalModels }}
{{- if .enabled }}
{{- if and (ne $.Values.llm.backend "vllm") (not $.Values.models.existingClaim) }}
{{- fail "retrievalModels reads the models volume: set models.existingClaim (only llm.backend vllm renders one)" }}
{{- end }}
{{- range $path := list .embedderPath .rerankerPath }}
{{- if and $path (not (hasPrefix "/models/" $path)) }}
{{- fail (printf "retrievalModels: %q is not under /models/, where the models volume is mounted" $path) }}
{{- end }}
{{- end }}
PULS_EMBEDDER: sentence-transformers
PULS_EMBEDDER_MODEL: {{ .embedderPath | quote }}
PULS_EMBEDDER_DEVICE: cuda
PULS_EMBEDDER_DTYPE: {{ .dtype | quote }}
{{- if .rerankerPath }}
PULS_RERANKER: cross-encoder
PULS_RERANKER_MODEL: {{ .rerankerPath | quote }}
PULS_RERANKER_DEVICE: cuda
PULS_RERANKER_DTYPE: {{ .dtype | quote }}
PULS_RERANKER_DEPTH: {{ .rerankerDepth | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq (include "puls.runtime" .) "rayservice" }}
{{- with .Values.rayService }}
PULS_RAY_INGRESS_REPLICAS: {{ .ingress.minReplicas | toString | quote }}
PULS_RAY_AUTOSCALING_MAX_REPLICAS: {{ .ingress.maxReplicas | toString | quote }}
{{- if $.Values.retrievalModels.enabled }}
PULS_RAY_EMBEDDER_DEPLOYMENT: "true"
PULS_RAY_EMBEDDER_NUM_GPUS: {{ .gpuWorkers.embedderGpus | toString | quote }}
PULS_RAY_EMBEDDER_NUM_CPUS: {{ include "puls.wholeCpus" (list "embedderCpus" .gpuWorkers.embedderCpus) | quote }}
{{- if $.Values.retrievalModels.rerankerPath }}
PULS_RAY_RERANKER_DEPLOYMENT: "true"
PULS_RAY_RERANKER_NUM_GPUS: {{ .gpuWorkers.rerankerGpus | toString | quote }}
PULS_RAY_RERANKER_NUM_CPUS: {{ include "puls.wholeCpus" (list "rerankerCpus" .gpuWorkers.rerankerCpus) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* rayService.gpuWorkers.<name>, checked to be a whole number of CPUs: the GPU worker
     advertises their sum with `ray start --num-cpus`, which takes an integer. Takes
     (list name value). */}}
{{- define "puls.wholeCpus" -}}
{{- $name := index . 0 -}}
{{- $value := index . 1 -}}
{{- if or (lt (float64 $value) 0.0) (ne (float64 $value) (float64 (int $value))) -}}
{{- fail (printf "rayService.gpuWorkers.%s %v: a whole number of CPUs (ray start --num-cpus takes an integer)" $name $value) -}}
{{- end -}}
{{- int $value -}}
{{- end -}}

{{/* The GPU worker's Ray CPUs: what its model replicas reserve, so that no Ingress replica
     is placed beside them. */}}
{{- define "puls.gpuWorkerCpus" -}}
{{- $workers := .Values.rayService.gpuWorkers -}}
{{- $cpus := int (include "puls.wholeCpus" (list "embedderCpus" $workers.embedderCpus)) -}}
{{- if .Values.retrievalModels.rerankerPath -}}
{{- $cpus = add $cpus (int (include "puls.wholeCpus" (list "rerankerCpus" $workers.rerankerCpus))) -}}
{{- end -}}
{{- $cpus -}}
{{- end -}}
