# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`. Each sets itself up.
# `make demo PORT=8090` serves the demo on another port.
PYTHON ?= python3
PORT ?= 8080
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint serve bench clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(VENV)/bin/gateway demo --port $(PORT)

serve: $(STAMP)
	$(VENV)/bin/gateway serve

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP)
	scripts/ensure-redis.sh
	scripts/ensure-prometheus.sh || echo 'no promtool/prometheus: the rule and panel tests will skip'
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	loadtests/run_bench.sh

clean:
	rm -rf $(VENV) build *.egg-info
