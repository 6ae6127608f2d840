# Two entry points, both working on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test template weights

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Main job: generate a few corpus utterances and write the preview contact sheet + GIF to out/preview.
demo: $(STAMP)
	$(PY) -m model.data.synth --preview --out out/preview

test: $(STAMP)
	$(PY) -m pytest -q tests

# Rebuild weights/template.npz from the pinned openfacefx wheel.
template: $(STAMP)
	$(PY) -m model.data.build_template

# Reproduce the model weights: the synthetic corpus (2 h of speech), then both training stages and
# the regression baseline; writes weights/meshtalk.pt. Hours on a CPU; uses CUDA when present.
weights: $(STAMP)
	$(PY) -m model.data.synth --out data/corpus --minutes 120 --seed 0
	$(PY) -m model.train --corpus data/corpus --out runs/default
