# make demo: create .venv, install, train -> evaluate -> predict on the built-in BBC News corpus.
# make test: create .venv if missing, run the test suite.
# make bench: the benchmarks behind BENCHMARKS.md (slow: real data, several models).
# make kernels: compile textclf's native LSTM ops for this machine (part of install).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install kernels demo test bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,test,plots]"
	touch $(STAMP)

# Without a C++ compiler the build prints why and the LSTM runs its graph loop.
kernels: $(STAMP)
	$(BIN)/python -m textclf.kernels.build

install: $(STAMP) kernels

demo: install
	$(BIN)/textclf train -c configs/bbc_cnn.yaml --output runs/demo --force
	$(BIN)/textclf evaluate runs/demo --split test
	$(BIN)/textclf predict runs/demo examples/news.txt --top-k 2

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python scripts/bench.py

clean:
	rm -rf runs build *.egg-info .pytest_cache
