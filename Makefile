# Puls — embedded profile on this machine. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp: a portable AVX2 build without tools/examples (~6 min on 2 cores).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
export HF_HUB_OFFLINE := 1

.PHONY: demo test check install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/puls demo

test: install
	$(BIN)/pytest

check: install
	$(BIN)/ruff check serving retrieval ingest guardrails puls benchmarks tests
	$(BIN)/ruff format --check serving retrieval ingest guardrails puls benchmarks tests
	$(BIN)/mypy serving retrieval ingest guardrails puls
	$(BIN)/hadolint Dockerfile.gpu

clean:
	rm -rf $(VENV) .puls
