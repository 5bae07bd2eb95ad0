# Quick start: `make demo`, then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup bench-setup demo test bench reproduce clean-venv

setup: $(STAMP)

# Re-installs only when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The benchmark's peers (GraphST, BANKSY, CellCharter with scVI): bench/requirements.txt, same pins.
BENCH_STAMP := $(VENV)/.bench-installed
bench-setup: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP) bench/requirements.txt bench/requirements-nodeps.txt
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) -m pip install --quiet --no-deps -r bench/requirements-nodeps.txt
	touch $(BENCH_STAMP)

# The whole pipeline on the built-in demo data: export + graph summary, image features, training, inference.
demo: setup
	$(PY) -m gist.demo --out dataset/demo
	$(PY) extract_features.py --dataset demo --extractor stats
	$(PY) train.py --dataset demo --save_path checkpoint/demo
	$(PY) test.py --dataset demo --save_path checkpoint/demo --result_path results/demo --baseline
	$(PY) spatial.py --dataset demo
	$(PY) umap_all.py --dataset demo
	$(PY) violin.py --dataset demo
	$(PY) mark_gene.py --dataset demo
	$(PY) -m gist.report results/demo

# The tests cover the benchmark's peer wrappers too, so they install bench/requirements.txt.
test: bench-setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/graph.py
	$(PY) bench/train.py
	$(PY) bench/extract.py
	$(PY) bench/scale.py

# The real-data benchmark behind BENCHMARKS.md (about 12 h on 2 CPU cores, 5 seeds; see BENCHMARKS.md for subsets): docs/benchmarks.json + tables.
reproduce: bench-setup
	$(PY) bench/reproduce.py

clean-venv:
	rm -rf $(VENV)
