# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench clean

# setuptools prints an "Editable installation" notice for every editable install of a
# project not in a src/ layout (a note, not a deprecation); PYTHONWARNINGS silences only that.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(PY) -m pytest

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/import_throughput.py
	$(PY) benchmarks/compose_time.py
	$(PY) benchmarks/request_classify.py
	$(PY) benchmarks/web_load.py
	$(PY) benchmarks/send_throughput.py --sink count headers smtp-sink
	$(PY) benchmarks/send_throughput.py --pipelining --memory-check 100000
	$(PY) benchmarks/cli_startup.py
	$(PY) benchmarks/send_throughput.py --workers 1 2 4 --connections 2 \
		--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
	$(PY) benchmarks/million.py
	$(PY) benchmarks/report_time.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
