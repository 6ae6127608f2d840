# Two entry points, both working on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-blender42 template weights

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Main job: build the extension, install it into a fresh Blender (PyPI bpy), add the head, bake the
# bundled sample speech; writes out/demo.blend, out/demo_preview.png (contact sheet) and .gif.
demo: $(STAMP)
	$(PY) tools/demo.py

# The whole suite on Blender 5.0 (PyPI bpy 5.0.1), then the Blender tests again on 4.2 LTS.
test: $(STAMP) test-blender42
	$(PY) -m pytest -q tests

# The Blender integration tests against Blender 4.2 LTS, the oldest version the extension supports:
# a second venv with the PyPI bpy 4.2 runs pytest, so the tests' Blender subprocesses are 4.2 too.
VENV42 := .venv42
STAMP42 := $(VENV42)/.installed
BLENDER42 := bpy==4.2.23 torch==2.13.0 numpy==1.26.4 pytest==9.2.0

$(STAMP42): Makefile
	test -x $(VENV42)/bin/python || $(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet $(BLENDER42)
	touch $(STAMP42)

test-blender42: $(STAMP42)
	$(VENV42)/bin/python -m pytest -q tests/test_extension.py tests/test_cli.py

# Rebuild weights/template.npz from the pinned openfacefx wheel.
template: $(STAMP)
	$(PY) -m model.data.build_template

# Reproduce the model weights: the synthetic corpus (12 min each of val and test speech, then 8 h of
# train speech, which replaces the first command's 96 min), both training stages and the regression
# baseline, then both stages fine-tuned to band-smoothed audio and then to heads mixed toward the
# template (weights/README.md); writes weights/meshtalk.pt. Hours on a CPU; uses CUDA when present.
weights: $(STAMP)
	$(PY) -m model.data.synth --out data/corpus --minutes 120 --seed 0
	$(PY) -m model.data.synth --out data/corpus --minutes 480 --seed 0 --split train
	$(PY) -m model.train --corpus data/corpus --out runs/default --export weights/meshtalk.pt
	$(PY) -m model.train --corpus data/corpus --out runs/smooth400 --init weights/meshtalk.pt --audio-smoothing-hz 400 \
		--stage1-steps 1500 --stage1-anneal-steps 500 --learning-rate 1e-4 --stage2-steps 2000 --export weights/meshtalk.pt
	$(PY) -m model.train --corpus data/corpus --out runs/mix --init weights/meshtalk.pt --identity-mix-prob 0.5 \
		--stage1-steps 1500 --stage1-anneal-steps 500 --learning-rate 1e-4 --stage2-steps 2000 --export weights/meshtalk.pt
