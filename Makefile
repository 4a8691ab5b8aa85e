# `make demo` and `make test` set up .venv on first use, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test lint bench clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the web-page test (skipped with a reason where it cannot be installed)
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser test will be skipped"

# CLIP=your_clip.wav: the demo ends with the packaged speech model's answer for it
demo: $(STAMP)
	$(BIN)/attsf demo
	@if [ -n "$(CLIP)" ]; then $(BIN)/attsf predict "$(CLIP)"; else \
	  echo "make demo CLIP=your_clip.wav ends with the packaged speech model's answer (attsf predict your_clip.wav)"; fi

# two workers, a test file each (its module fixtures built once); the trainings in tests use one thread
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=12

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/cli_startup.py

clean:
	rm -rf $(VENV) runs .pytest_cache
