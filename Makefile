# The two commands a newcomer needs (see README):
#   make demo   set everything up and run the main job end to end on the embedded default
#   make test   set everything up and run the whole test suite (what CI runs)
.PHONY: demo test setup services lint bench clean

PY := .venv/bin/python
LINT_PATHS := service worker cttv2_engine cttv2_cli sdk tests benchmarks scripts examples docker migrations

demo: setup
	$(PY) scripts/demo.py

test: setup services
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m pytest -ra -q $(PYTEST_ARGS)

setup:
	scripts/setup.sh

services:
	scripts/services.sh

lint: setup
	$(PY) -m ruff check $(LINT_PATHS)

bench: setup services
	$(PY) benchmarks/engine.py

clean:
	rm -rf .state .pytest_cache
