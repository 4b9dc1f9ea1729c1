# `make demo` and `make test` each set themselves up: a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MMSTAMP := $(VENV)/.openmmlab

export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test bench install openmmlab clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# test data, not a dependency: imgaug's wheel ships a real photo with real annotations (quokka: box, keypoints,
	# polygon, depth map) that tests/test_real_data.py reads; --no-deps keeps its heavy dependencies out
	$(BIN)/python -m pip install --quiet --no-deps imgaug==0.4.0
	touch $(STAMP)

# the optional OpenMMLab backend (mmdet, mmseg on the shared backbone): builds mmcv with its ops once
# (about 10 min on an idle machine; the wheel is cached in ~/.cache/transfer-matrix/wheels), then seconds.
# `make test` runs its tests when it is installed and skips them otherwise.
openmmlab: $(MMSTAMP)

$(MMSTAMP): $(STAMP) tasks/openmmlab/install.py
	$(BIN)/python -m tasks.openmmlab.install
	touch $(MMSTAMP)

demo: $(STAMP)
	$(BIN)/tmx run configs/demo.yaml
	$(BIN)/tmx report configs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=12

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf outputs .pytest_cache
