# Two commands: `make demo` and `make test`. Each creates or refreshes the
# virtual environment in .venv by itself (idempotent: a stamp file records
# what was installed, and is redone only when pyproject.toml or this file change).
# Another Python gets a venv of its own: `make test PYTHON=python3.13` builds
# .venv-3.13 (pins chosen per version below); the default stays 3.11 in .venv.
PYTHON ?= python3.11
# The interpreter PYTHON names, as a path. A pyenv shim of a version that is
# installed but not selected (python3.12 beside a global 3.11) answers "command
# not found": then ask pyenv with every installed version selected.
PY_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	{ command -v pyenv >/dev/null && PYENV_VERSION=$$(pyenv versions --bare | paste -sd: -) \
	  $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null; })
PY_VER := $(shell $(PY_EXE) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV   ?= $(if $(filter python3.11,$(PYTHON)),.venv,.venv-$(PY_VER))
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spikereg-installed
# This machine kind carries a CPU wheel of torch 2.13.0 (Python 3.11) that pip finds
# locally; elsewhere, and for Python 3.12/3.13, the same pin resolves on PyPI (a CUDA
# build on Linux, several GB: it has cp312 and cp313 wheels).
# Override with e.g. `make test TORCH=torch==2.3.1`.
TORCH  ?= torch==2.13.0
# numpy: Lava is built for numpy 1.x and runs on it where it can (3.10-3.12: numpy 1.26
# has wheels up to 3.12); numpy 1.x has no wheels for 3.13, so there numpy 2, with
# spikereg/compat.py making Lava work on it (pyproject.toml says the same with markers).
NUMPY1 := numpy>=1.24.4,<2
NUMPY2 := numpy>=2.1,<3
NUMPY  ?= $(if $(filter 3.13 3.14 3.15,$(PY_VER)),$(NUMPY2),$(NUMPY1))
LAVA   := lava-nc==0.10.0 lava-dl==0.6.0
# nilearn only ships the MNI ICBM152 template files we read; its import pulls
# pandas (which would upgrade numpy past Lava's numpy<2), so no dependencies.
NILEARN := nilearn==0.14.1

.PHONY: demo test install clean bench-data

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -n "$(PY_VER)" || { echo "error: $(PYTHON) not found (SpikeReg needs Python 3.10-3.13)"; exit 1; }
	@echo "python $(PY_VER) ($(PY_EXE)) -> $(VENV): $(TORCH), $(NUMPY)$(if $(filter 3.13 3.14 3.15,$(PY_VER)), (numpy 1.x has no wheels for $(PY_VER)),)$(if $(filter 3.11,$(PY_VER)),, (torch from PyPI for $(PY_VER): a CUDA build of several GB))"
	test -x $(BIN)/python || $(PY_EXE) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" "$(NUMPY)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)" "$(NUMPY)"
	@# Last, and without dependency resolution: pip then has no pins of theirs to report as conflicts.
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python $(LAVA) $(NILEARN)
	@echo "note: lava-nc 0.10.0 / lava-dl 0.6.0 installed with --no-deps: their pins (Python < 3.11, torch 2.3, numpy < 2, pytest < 8) are overridden on purpose; spikereg/compat.py makes them work"
	$(BIN)/python -c "import spikereg.compat as c; c.slayer(); c.netx(); print('lava-nc, lava-dl, torch ready')"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m ruff check spikereg lava_export benchmarks tests
	$(BIN)/lint-imports  # the layers of README's "Layout" (pyproject.toml [tool.importlinter])
	$(BIN)/python -m pytest -q

# The benchmarks' extra libraries (demons, ANTs SyN) and the real brain they evaluate on:
# Colin27 (Debian's mricron-data, ch2bet.nii.gz; evaluation only, never trained on).
bench-data: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]" "$(NUMPY)"
	test -f /usr/share/mricron/templates/ch2bet.nii.gz || apt-get install -y -q mricron-data || \
		{ apt-get update -q && apt-get install -y -q mricron-data; }

DEMO := demo_output
demo: $(STAMP)
	$(BIN)/spikereg data synth --out $(DEMO)/data --pairs 1 --spacing 4 --seed 2026
	rm -rf $(DEMO)/train  # train refuses an earlier run's folder (it would mix their checkpoints)
	$(BIN)/spikereg train --config configs/demo.yaml --out $(DEMO)/train
	$(BIN)/spikereg export $(DEMO)/train/checkpoints/best.pt --to netx --out $(DEMO)/model.net
	$(BIN)/spikereg run --backend sim --model $(DEMO)/model.net \
		--fixed $(DEMO)/data/train/fixed_images/pair_000.nii.gz \
		--moving $(DEMO)/data/train/moving_images/pair_000.nii.gz \
		--moving-labels $(DEMO)/data/train/moving_labels/pair_000.nii.gz --out $(DEMO)/run --overwrite
	$(BIN)/spikereg report $(DEMO)/run
	@echo "demo outputs: $(DEMO)/ (data/, train/, model.net, model.verify.json, run/)"

clean:
	rm -rf $(VENV) demo_output
