# `make repro` / `make test` work on a fresh machine: they install ffmpeg (Debian/Ubuntu), a venv and the
# package, then run the pipeline on the embedded sample / the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test real-ravdess real-fi real results
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v ffmpeg >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[deep,scale,test]'
	touch $@

repro: setup
	dvc repro

test: setup
	pytest -q

# The real dev sets of ../shared/data (REMODIFF_SHARED overrides) through the whole pipeline in .real/<name>/;
# results land in metrics/real/<name>/ (README, "Real data"). Installs like `make repro` first.
real-ravdess: setup
	remodiff real-data ravdess

real-fi: setup
	remodiff real-data fi

# every committed dev-set run (metrics/real/*/switches.yaml), then docs/results.md
real: setup
	for name in $$(ls metrics/real); do remodiff real-data $$name || exit 1; done
	remodiff results

results: setup
	remodiff results
