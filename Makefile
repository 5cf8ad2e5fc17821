# The README's two commands: `make run` and `make test`. Both build the environment first
# (idempotent: a stamp file skips the install until envs/ or pyproject.toml change).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-main
# The export stage converts in its own environment (onnx2tf's pins conflict with the main one).
EXPORT_VENV ?= .venv-export
EXPORT_STAMP := $(EXPORT_VENV)/.installed-export
LITERT_VENV ?= .venv-litert
LITERT_STAMP := $(LITERT_VENV)/.installed-litert
NODE_STAMP := mobile/node_modules/.installed
LLAMA_STAMP := $(VENV)/.installed-llama
CORES ?= 2
# Jobs call `python -m sophia...`: put the environment's interpreter first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Two cores: keep BLAS/OpenMP from oversubscribing when jobs run in parallel.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1
# `mlflow ui` without MLflow's job runner (GenAI scorers; Sophia runs none): 8 fewer processes, a faster start.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION ?= false

.PHONY: setup system run test lint dry-run serve-app mlflow-ui lock clean

setup: $(STAMP) $(EXPORT_STAMP) $(LITERT_STAMP) $(NODE_STAMP) $(LLAMA_STAMP) system

# Debian packages: bubblewrap isolates generated code (evaluate stage); chromium runs the phone
# app's and the MLflow UI's browser tests; graphviz draws the DAG (README: snakemake --dag | dot).
# Installed when missing and we are root with apt; otherwise say what to do.
SYSTEM_PACKAGES := bwrap:bubblewrap chromium:chromium dot:graphviz
# SLURM 22.05 with munge and slurmdbd + MariaDB accounting: the one-node cluster of
# scripts/slurm-cluster.sh, which tests/test_slurm.py submits the workflow to.
SYSTEM_PACKAGES += slurmctld:slurm-wlm sbatch:slurm-client munged:munge slurmdbd:slurmdbd mariadbd:mariadb-server
system:
	@for pair in $(SYSTEM_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq $$pkg >/dev/null || { apt-get update -qq && apt-get install -y -qq $$pkg >/dev/null; }; \
	  else echo "warning: $$cmd is missing: install Debian's $$pkg (sudo apt-get install $$pkg)"; fi; done

# The phone app's npm dependencies (LiteRT.js, tokenizers, esbuild, playwright-core), from the lock.
$(NODE_STAMP): mobile/package.json mobile/package-lock.json
	cd mobile && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# envs/cuda.txt (bitsandbytes) only where a GPU is: CPU jobs would import it for nothing.
$(STAMP): envs/main.txt envs/cuda.txt envs/constraints.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r envs/main.txt -c envs/constraints.txt
	if nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r envs/cuda.txt -c envs/constraints.txt; fi
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# llama-cpp-python (stage gguf, `sophia serve`): an sdist that compiles llama.cpp; its wheel is built
# once into ~/.cache/sophia and reused, and the same sdist supplies llama.cpp's GGUF converter.
$(LLAMA_STAMP): $(STAMP) envs/llama.txt envs/llama_cpp.sh
	CORES=$(CORES) bash envs/llama_cpp.sh $(PY)
	@touch $@

$(EXPORT_STAMP): envs/export.txt pyproject.toml
	@test -x $(EXPORT_VENV)/bin/python || python3 -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r envs/export.txt
	$(EXPORT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# export.backend litert_torch (direct PyTorch -> TFLite, for models past onnx2tf's 2 GB limit).
$(LITERT_STAMP): envs/litert.txt pyproject.toml
	@test -x $(LITERT_VENV)/bin/python || python3 -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r envs/litert.txt
	$(LITERT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

run: setup
	snakemake --cores $(CORES)
	@echo
	@echo "Done. Browse the runs in the MLflow UI: make mlflow-ui"
	@echo "  (or $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --port 5000), then open"
	@$(PY) -m sophia.ui --port 5000
	@if [ -d results/mobile ]; then echo; echo "The offline phone app is in results/mobile/. Serve it with:"; \
	  echo "  make serve-app   (http://127.0.0.1:8321/; a phone needs HTTPS: copy results/mobile/ to any static host)"; fi

# Two workers (CORES), one test file each at a time (module fixtures build once), in the order of
# tests/micro_dag.py (SLURM first: its worker mostly waits on the scheduler); the 25 slowest tests in every log.
test: setup lint
	$(PY) -m pytest -n $(CORES) --dist loadfile --no-loadscope-reorder --durations=25

lint: setup
	$(VENV)/bin/ruff check .

dry-run: setup
	snakemake -n --cores $(CORES)

serve-app:
	node mobile/serve.mjs --root results/mobile --port 8321

mlflow-ui: setup
	@echo "Open the study's runs (model-training view) at:"; $(PY) -m sophia.ui --port 5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --port 5000

# Refresh the lock after changing envs/main.txt (run on the reference machine, then commit).
lock: setup
	head -n 3 envs/constraints.txt > envs/constraints.txt.new
	# envs/cuda.txt's pins stay in the lock on a machine without a GPU (where they are not installed)
	{ $(PY) -m pip freeze --exclude-editable | grep -v '^sophia' | sed 's/^torch==\(.*\)+cpu/torch==\1/'; \
	  grep -E '^[A-Za-z]' envs/cuda.txt; } | sort -s -f -u -t= -k1,1 >> envs/constraints.txt.new
	mv envs/constraints.txt.new envs/constraints.txt

clean:
	rm -rf results .snakemake test-artifacts
