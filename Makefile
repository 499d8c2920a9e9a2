# Two commands: `make demo` and `make test`. Each creates or refreshes the
# virtual environment in .venv by itself (idempotent: a stamp file records
# what was installed, and is redone only when pyproject.toml or this file change).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spikereg-installed
# This machine kind carries a CPU wheel of torch 2.13.0 that pip finds locally;
# elsewhere the same pin resolves on PyPI (a CUDA build on Linux GPU hosts).
# Override with e.g. `make test TORCH=torch==2.3.1`.
TORCH  ?= torch==2.13.0
LAVA   := lava-nc==0.10.0 lava-dl==0.6.0
# nilearn only ships the MNI ICBM152 template files we read; its import pulls
# pandas (which would upgrade numpy past Lava's numpy<2), so no dependencies.
NILEARN := nilearn==0.14.1

.PHONY: demo test install clean bench-data

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (SpikeReg needs Python 3.10 or 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" "numpy>=1.24.4,<2"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)" "numpy>=1.24.4,<2"
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
	$(BIN)/python -m pip install --quiet -e ".[bench]" "numpy>=1.24.4,<2"
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
