# make quickstart   set up .venv (first time) and train the default task, circles
# make lint         ruff: lint, import order, format check
# make docs         build the documentation site strictly (a broken link fails) into build/site
# make test         lint, the docs build, then the fast test suite (what CI runs first)
# make test-slow    the slow tests too (real CIFAR-10 images, many kills)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.installed

.PHONY: quickstart lint docs test test-slow bench tensorboard

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(READY)

quickstart: $(READY)
	$(BIN)/python train.py fit --config configs/circles.yaml

lint: $(READY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: $(READY)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: lint docs
	$(BIN)/python -m pytest -m "not slow and not gpu"

test-slow: $(READY)
	$(BIN)/python -m pytest -m "slow"

bench: $(READY)
	$(BIN)/python bench/template_figures.py

tensorboard: $(READY)
	$(BIN)/tensorboard --logdir lightning_logs
