# Two commands: `make demo` (runtime only) and `make test` (everything, then pytest).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_OUT := demo_output

.PHONY: demo test install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .

install-dev: $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,test]'

demo: install
	@test -f ckpt/ferplus_mobilenetv3_small.onnx || { echo "The shipped model ckpt/ferplus_mobilenetv3_small.onnx is missing: train and export it first (see README)."; exit 1; }
	$(PY) -m runtime.camera --source tests/data --headless --output $(DEMO_OUT)/annotated --json $(DEMO_OUT)/results.jsonl

test: install-dev
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
