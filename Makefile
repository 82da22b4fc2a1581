# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/digits_cnn.yaml

.PHONY: install run test test-heavy test-fast smoke lint docs format bench clean

install: $(STAMP)

# Reinstall only when the package definition changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/bigmodel train $(CONFIG)

# Two test processes (pytest-xdist), one per core, each taking whole files so a module's
# fixtures run once; the slowest tests are listed at the end. `test` is what CI runs:
# all but five heavy tests of closed issues (tests/conftest.py HEAVY), which `test-heavy` runs.
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadfile --durations=20

test: install
	$(PYTEST) -m "not heavy"

test-heavy: install
	$(PYTEST) -m heavy

test-fast: install
	$(PYTEST) -m "not slow and not multiprocess"

smoke: install
	$(BIN)/bigmodel smoke configs/

lint: install
	$(BIN)/ruff check bigmodel_cli tests bench
	$(BIN)/ruff format --check bigmodel_cli tests bench

docs: install
	$(BIN)/python -m bigmodel_cli.config.reference README.md

format: install
	$(BIN)/ruff check --fix bigmodel_cli tests bench
	$(BIN)/ruff format bigmodel_cli tests bench

# bigmodel against plain and hand-tuned Keras, LM tokens/s and MFU, start-up (~6 minutes);
# writes bench/results.json and the README's Performance table. Then generation with and
# without the key/value cache (~1 minute; bench/generate_results.json). Then a trial under
# `bigmodel tune` against the same config under `bigmodel train` (~2 minutes; bench/tune_results.json).
# Then training on a 2 GB text corpus, its peak RSS and tokenization speed, and tokens/s
# streamed from a token file against in memory (~10 minutes, 6 GB of temporary files;
# bench/corpus_results.json). Then training on 1.4 GB of TFRecord image
# shards: peak RSS, streamed against in-memory examples/s, SIGTERM and time-limit stops
# (~10 minutes, 1.5 GB of temporary files; bench/image_results.json).
bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/tune.py
	$(BIN)/python bench/corpus_stream.py
	$(BIN)/python bench/image_stream.py

clean:
	rm -rf $(VENV) runs .pytest_cache
