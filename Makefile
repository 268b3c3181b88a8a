# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint bench clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,cnn,wandb,export,serve,scale]'
	touch $(BIN)/activate

demo: $(BIN)/activate
	$(BIN)/python demo.py --image_dir examples --output_dir output/examples --no-display --overwrite

# Two test processes: most tests wait on a subprocess, a server or a file, not on the cores.
test: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --durations=15

# Everything but the tests marked slow (training, killed processes, servers, browser, Ray).
test-fast: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -m "not slow" --durations=15

lint: $(BIN)/activate
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/activate
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) output
