# VSDream: `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean addon screenshot gpu-check gpu-wheels setup-check mini-sd

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first: the CPU build on disk (a bare `torch` would pull CUDA wheels)
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

# the Khronos glTF validator for tests/test_gltf_validator.py, pinned by its lock file (needs node + npm)
GLTF_VALIDATOR := tools/gltf_validator/node_modules/.package-lock.json
$(GLTF_VALIDATOR): tools/gltf_validator/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tools/gltf_validator --no-audit --no-fund; \
	else echo "npm not found: tests/test_gltf_validator.py will be skipped (install node 18+)"; fi

setup: $(STAMP) $(GLTF_VALIDATOR)

test: $(STAMP) $(GLTF_VALIDATOR)
	$(PY) -m pytest -q tests

# ruff with the project's [tool.ruff] rules (pyproject.toml); .ci/run runs it before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	$(PY) tools/demo.py

# window check: Debian's Blender under Xvfb (apt-get install -y blender xvfb) with the add-on installed
screenshot: $(STAMP)
	@command -v blender >/dev/null && command -v xvfb-run >/dev/null || \
		{ echo "screenshot needs Blender and Xvfb: sudo apt-get install -y blender xvfb"; exit 1; }
	$(PY) build_addon.py
	xvfb-run -a -s "-screen 0 1600x1200x24" blender --factory-startup --python tests/gui/screenshot.py -- \
		--addon build/addon/vsdream --engine-python $(PY) --out out/screenshot.png

addon: $(STAMP)
	$(PY) build_addon.py

# the add-on's real "Set up engine" into a temporary folder (Linux/CPU here: the CPU torch build);
# prints time, environment size and the torch build (TORCH=cpu|cu128|default overrides the choice)
setup-check: $(STAMP)
	$(PY) tools/setup_check.py --torch $(or $(TORCH),auto)

bench: $(STAMP)
	$(VENV)/bin/vsdream bench quality --json

# retrain models/mini-sd (the small learned SD of issue 22) from renders of the built-in worlds:
# fixed seed, one thread, about an hour on an idle 2-core CPU (MINI_SD_ARGS, e.g. --budget-min 80)
mini-sd: $(STAMP)
	$(PY) tools/train_mini_sd.py --out models/mini-sd $(MINI_SD_ARGS)

# first look at a CUDA machine, offline, < 10 min (tools/gpu_check.py): that machine's own Python
# with torch (GPU_PYTHON, never .venv); packages it lacks come from wheels/. Not part of `make test`.
GPU_PYTHON ?= python3
GPU_PYTHON_VERSION ?= 3.12

gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py

# on a networked machine: the wheels gpu-check installs offline, for the GPU machine's Python
gpu-wheels: $(STAMP)
	$(PY) tools/gpu_check.py --download-wheels wheels --python-version $(GPU_PYTHON_VERSION)

clean:
	rm -rf $(VENV) dist out build *.egg-info
