# Set-up and everyday commands. `make run` shows the lamp; `make test` runs the tests.
# Both create .venv on first use. TORCH picks the torch wheel: the default is the pinned
# release (CPU build on this project's CI); see the README for CUDA and Apple M1.

VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test fuzz default-lamp clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lavalamp run --config config.yaml

test: $(STAMP)
	$(PY) -m pytest

# The config and checkpoint-header fuzz tests with many more examples than the suite's few seconds.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-3000} $(PY) -m pytest tests/test_fuzz.py -q --timeout 3600

# Retrain the shipped default lamp from the simulator (see README, "The default lamp").
default-lamp: $(STAMP)
	$(VENV)/bin/lavalamp train --sim-clips 48 --sim-frames 800 --sim-palette classic --seed 0 \
		--vae-steps 2000 --refine-steps 500 --rnn-steps 8000 --frame-step 10 --kl-weight 0.5 --rollout 8 \
		--rollout-weight 0.5 --context-noise 0.03 --threads 2 --name default-lamp \
		--run-dir runs/default-lamp --out models/default_lamp.safetensors

clean:
	rm -rf $(VENV) build dist *.egg-info
