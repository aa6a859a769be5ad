# alq: `make demo` runs the main job on sample_data/, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ALQ := $(VENV)/bin/alq
STAMP := $(VENV)/.alq-installed
EXTRAS ?= dev,ray
DEMO := .demo

.PHONY: install install-gpu demo test bench bench-peers lint sample-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The CPU build of torch first (from the machine's find-links), so the package's torch range installs nothing more.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# Swap faiss-cpu for faiss-gpu (they provide the same module and must not both be installed).
install-gpu: install
	$(PY) -m pip uninstall --yes faiss-cpu
	$(PY) -m pip install --quiet "faiss-gpu>=1.8"

demo: install
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== alq embed: build a pool from sample_data/pool.parquet"
	$(ALQ) embed sample_data/pool.parquet --id-column id --vector-column embedding --out $(DEMO)/pool --shard-rows 500 --dtype float32
	@echo "== alq labels: merge the first annotation batch"
	$(ALQ) labels import sample_data/labels_round0.csv --pool $(DEMO)/pool --out $(DEMO)/labels.parquet
	@echo "== alq info"
	$(ALQ) info $(DEMO)/pool
	$(ALQ) info $(DEMO)/labels.parquet
	@echo "== alq cluster: average-linkage HAC of the pool (once per pool, reused every round)"
	$(ALQ) cluster $(DEMO)/pool --out $(DEMO)/clusters
	@echo "== alq select: the Cluster-Margin batch (needs the head from alq train)"
	$(ALQ) select $(DEMO)/pool --head $(DEMO)/head.pt --labels $(DEMO)/labels.parquet --clusters $(DEMO)/clusters \
		--strategy cluster-margin --budget 100 --seed 0 --out $(DEMO)/batch.parquet --json

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: install bench-peers
	$(PY) -m pytest -q -m bench -s tests/bench -p no:xdist

lint: install
	$(VENV)/bin/ruff check alq tests

# Regenerates sample_data/ from scikit-learn's bundled digits (dev dependency only).
sample-data: install
	$(PY) tests/make_sample_data.py sample_data

clean:
	rm -rf $(DEMO) build *.egg-info

# Benchmark-only peer libraries in their own venv (never in alq's): modAL, scikit-activeml, DISTIL.
PEERS := .bench/peers
bench-peers:
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	@$(PEERS)/bin/python -c "import torch" 2>/dev/null || $(PEERS)/bin/pip install --quiet "torch==2.13.0"
	-$(PEERS)/bin/pip install --quiet modAL-python scikit-activeml
	-$(PEERS)/bin/pip install --quiet decile-distil
