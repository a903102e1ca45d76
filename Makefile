# VSDream: `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean addon screenshot

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first: the CPU build on disk (a bare `torch` would pull CUDA wheels)
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m engine.demo

addon: $(STAMP)
	$(PY) build_addon.py

bench: $(STAMP)
	$(VENV)/bin/vsdream bench quality --json

clean:
	rm -rf $(VENV) dist out build *.egg-info
