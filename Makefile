# alq: `make demo` runs the main job on sample_data/, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ALQ := $(VENV)/bin/alq
STAMP := $(VENV)/.alq-installed
DEV_STAMP := $(VENV)/.alq-dev-installed
# `make demo` needs alq alone; `make test` (and bench, lint) add these extras
DEV_EXTRAS ?= dev,ray
# torch goes in first, so the package's torch range installs nothing more. A bare `pip install torch` on
# Linux pulls the CUDA build (GBs); on a fresh machine without a GPU, take the CPU wheel:
#   make demo TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
DEMO := .demo

.PHONY: install install-dev install-gpu gpu-venv gpu-check demo test bench bench-peers lint sample-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

install-dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(DEV_EXTRAS)]"
	@touch $(DEV_STAMP)

# Swap faiss-cpu for faiss-gpu (they provide the same module and must not both be installed).
install-gpu: install
	$(PY) -m pip uninstall --yes faiss-cpu
	$(PY) -m pip install --quiet "faiss-gpu>=1.8"

# The GPU check: every CUDA / faiss-gpu path against the CPU on a synthetic pool (tests/gpu_check.py).
# With a GPU it builds .gpu-venv (a CUDA torch + faiss-gpu, never faiss-cpu; .venv is left alone).
# Without one it says so, runs the CPU half at --size small (GPU_CHECK_ARGS="--size full" to insist) and exits 0.
GPU_TORCH ?= torch==2.14.1
GPU_FAISS ?= faiss-gpu>=1.8
GPU_CHECK_ARGS ?=
gpu-venv: install
	$(PY) tests/gpu_check.py --install-only --torch "$(GPU_TORCH)" --faiss "$(GPU_FAISS)"

gpu-check: install
	$(PY) tests/gpu_check.py --torch "$(GPU_TORCH)" --faiss "$(GPU_FAISS)" $(GPU_CHECK_ARGS)

demo: install
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== alq embed: build a pool (and a test pool) from sample_data/ (scikit-learn digits, 64-d)"
	$(ALQ) embed sample_data/pool.parquet --id-column id --vector-column embedding --out $(DEMO)/pool --shard-rows 500 --dtype float32
	$(ALQ) embed sample_data/test.parquet --out $(DEMO)/test --dtype float32 --quiet
	@echo "== alq labels: merge the first annotation batch (100 labels) into the labels file"
	$(ALQ) labels import sample_data/labels_round0.csv --pool $(DEMO)/pool --out $(DEMO)/labels.parquet
	@echo "== alq info: what the pool and the labels file hold (--verify re-checks every shard)"
	$(ALQ) info $(DEMO)/pool --verify
	$(ALQ) info $(DEMO)/labels.parquet
	@echo "== alq train: a linear head on the labeled rows (pool-standardised inputs, L2 strength by 5-fold CV, L-BFGS)"
	$(ALQ) train $(DEMO)/pool $(DEMO)/labels.parquet --out $(DEMO)/head.pt
	@echo "== alq score: every pool row through the head, one Parquet per shard"
	$(ALQ) score $(DEMO)/pool --head $(DEMO)/head.pt --out $(DEMO)/scores
	@echo "== alq select --strategy margin: the 100 rows the head is least sure between its top two classes"
	$(ALQ) select $(DEMO)/pool --head $(DEMO)/head.pt --labels $(DEMO)/labels.parquet --scores $(DEMO)/scores --strategy margin --budget 100 --round 1 --out $(DEMO)/batch-margin.parquet
	@echo "== alq select --strategy base: 100 rows near the boundaries, balanced over classes"
	$(ALQ) select $(DEMO)/pool --head $(DEMO)/head.pt --labels $(DEMO)/labels.parquet --strategy base --budget 100 --round 1 --out $(DEMO)/batch-base.parquet
	@echo "== alq cluster: average-linkage HAC of the pool (once per pool, reused every round)"
	$(ALQ) cluster $(DEMO)/pool --out $(DEMO)/clusters
	@echo "== alq select: the Cluster-Margin batch (needs the head from alq train)"
	$(ALQ) select $(DEMO)/pool --head $(DEMO)/head.pt --labels $(DEMO)/labels.parquet --clusters $(DEMO)/clusters \
		--strategy cluster-margin --budget 100 --seed 0 --round 1 --out $(DEMO)/batch-cluster-margin.parquet

test: install-dev
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: install-dev bench-peers
	$(PY) -m pytest -q -m bench -s tests/bench/bench_*.py -p no:xdist

lint: install-dev
	$(VENV)/bin/ruff check alq tests

# Regenerates sample_data/ from scikit-learn's bundled digits (dev dependency only).
sample-data: install-dev
	$(PY) tests/make_sample_data.py sample_data

clean:
	rm -rf $(DEMO) build *.egg-info

# Benchmark-only peer libraries in their own venv (never in alq's): modAL, scikit-activeml, DISTIL.
PEERS := .bench/peers
bench-peers:
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	@$(PEERS)/bin/python -c "import torch" 2>/dev/null || $(PEERS)/bin/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	-$(PEERS)/bin/pip install --quiet modAL-python scikit-activeml
	-$(PEERS)/bin/pip install --quiet decile-distil
