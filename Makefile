# Set-up and everyday commands. `make run` shows the lamp; `make test` runs the tests (`make
# test-fast`: all but the slow ones). They create .venv on first use, for which the system needs
# python3 >= PYTHON_MIN with its venv module (Debian/Ubuntu: python3-venv) and make. TORCH picks
# the torch wheel: the default is the pinned release (CPU build on this project's CI); see the
# README for CUDA and Apple M1.

VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PYTHON_MIN := 3.10
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NEEDS := needs $(PYTHON) >= $(PYTHON_MIN) with its venv module (Debian/Ubuntu: sudo apt install python3 python3-venv)

.PHONY: run test test-fast config-yaml fuzz default-lamp eval-default-lamp clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(PYTHON_MIN)".split("."))))' \
		2>/dev/null || { echo "make: cannot make $(VENV): $(NEEDS)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: cannot make $(VENV): $(NEEDS)" >&2; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lavalamp run --config config.yaml

test: $(STAMP)
	$(PY) -m pytest

# The everyday loop: every test but those marked slow (they start Python and torch, build a wheel or
# start a display server); `make test` runs them all, as CI does.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

# Rewrite config.yaml from the config dataclasses (daemon/config.py): their docs are its comments.
config-yaml: $(STAMP)
	$(PY) -c 'from lavalamp.daemon.config_file import write_config_yaml; write_config_yaml("config.yaml")'

# The config and checkpoint-header fuzz tests with many more examples than the suite's few seconds.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-3000} $(PY) -m pytest tests/test_fuzz.py -q --timeout 3600

# Retrain the shipped default lamp from the simulator (see README, "The default lamp"): a 64 px lamp
# (VAE, refinement, RNN), its decoder sharpened on 64 px simulator frames of other seeds, then an
# upsampler to 256 px sharpened against discriminators on 256 px frames of those seeds, then a new
# RNN trained on 400 longer clips at the lamp's own 3 fps (seeds 200-599). Each step calibrates the
# temperature on its own frames; the first three give the lamp its footage's fixed detail and grain.
default-lamp: $(STAMP)
	$(VENV)/bin/lavalamp train --sim-clips 48 --sim-frames 800 --sim-palette classic --seed 0 \
		--vae-steps 2000 --refine-steps 500 --rnn-steps 8000 --frame-step 10 --kl-weight 0.5 --rollout 8 \
		--rollout-weight 0.5 --context-noise 0.03 --decoder-loss l1 --threads 2 --name default-lamp \
		--run-dir runs/default-lamp-64 --out runs/default-lamp-64/lamp.safetensors
	$(VENV)/bin/lavalamp train --sim-clips 32 --sim-frames 240 --sim-palette classic --sim-seed 100 \
		--init-from runs/default-lamp-64/lamp.safetensors --decoder-loss adversarial --sharpen-steps 2000 \
		--adversarial-weight 0.1 --threads 2 --name default-lamp --run-dir runs/default-lamp-64-sharp \
		--out runs/default-lamp-64-sharp/lamp.safetensors
	$(VENV)/bin/lavalamp train --sim-clips 32 --sim-frames 240 --sim-palette classic --sim-seed 100 \
		--frame-size 256 --init-from runs/default-lamp-64-sharp/lamp.safetensors --sharpen-steps 2000 \
		--adversarial-weight 0.1 --threads 2 --name default-lamp --run-dir runs/default-lamp-256 \
		--out runs/default-lamp-256/lamp.safetensors
	$(VENV)/bin/lavalamp train --sim-clips 400 --sim-frames 300 --sim-fps 3 --sim-palette classic --sim-seed 200 \
		--init-from runs/default-lamp-256/lamp.safetensors --init-trains rnn --frame-step 1 --rnn-steps 8000 \
		--rollout 8 --rollout-weight 0.5 --context-noise 0.15 --threads 2 --name default-lamp \
		--run-dir runs/default-lamp-rnn --out models/default_lamp.safetensors

# Judge the default lamp as the README does: ten unseen simulator seeds at its own rate, from the
# start and after a million dream steps.
REFERENCE := $(foreach s,0 1 2 3 4 5 6 7 8 9,runs/reference/seed100$(s).npz)
runs/reference/seed%.npz: | $(STAMP)
	@mkdir -p $(@D)
	$(VENV)/bin/lavalamp simulate --frames 300 --seed $* --size 256 --fps 3 --palette classic --out $@

eval-default-lamp: $(REFERENCE)
	$(VENV)/bin/lavalamp eval --model models/default_lamp.safetensors --reference $(REFERENCE) \
		--frames 2000 --critic-seeds 3 --out runs/eval-default-lamp/start
	$(VENV)/bin/lavalamp eval --model models/default_lamp.safetensors --reference $(REFERENCE) \
		--frames 2000 --skip 1000000 --critic-seeds 3 --out runs/eval-default-lamp/skip

clean:
	rm -rf $(VENV) build dist *.egg-info
