# Two commands: `make demo` (runtime only) and `make test` (everything, then pytest, then the runtime's tests
# again in a runtime-only venv without torch, as on a Pi).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RT_VENV := .venv-runtime
DEMO_OUT := demo_output

.PHONY: demo test test-runtime test-arm64 runtime-venv model install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .

install-dev: $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,test,cluster]'

demo: install
	$(PY) -m runtime.camera --source tests/data --headless --output $(DEMO_OUT)/annotated --json $(DEMO_OUT)/results.jsonl

test: install-dev
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-runtime

# `pip install .` plus pytest, no torch: every runtime test runs, the training ones skip with their reason.
test-runtime: runtime-venv
	$(RT_VENV)/bin/python -m pytest -q -p no:cacheprovider

runtime-venv:
	test -x $(RT_VENV)/bin/python || $(PYTHON) -m venv $(RT_VENV)
	$(RT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '.[test]'
	$(RT_VENV)/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"

# The runtime on aarch64 under qemu (Raspberry Pi 4 and 5 CPU models), compared with this x86 machine; needs
# Debian's apt and network access to its archive and PyPI (exit 77 with the reason where it cannot be set up).
test-arm64: runtime-venv
	bash tests/arm64/run.sh

# Rebuild the EfficientNet-Lite0 model from the ImageNet weights (hours on a CPU): training/recipe.sh.
model: install-dev
	bash training/recipe.sh

clean:
	rm -rf $(VENV) $(RT_VENV) $(DEMO_OUT) *.egg-info build
