# Switchboard: a thin Makefile over uv. Only Python 3.11+ and pip are needed; uv is installed into .tools/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_PREFERENCE := only-system

.PHONY: help install chromium run test lint format bench bench-routing faults clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

install: $(UV) ## create .venv with every package and tool (from uv.lock)
	$(UV) sync --frozen

run: install ## start the whole system (embedded PostgreSQL and broker unless configured)
	$(UV) run --frozen switchboard-dev run

# Page tests drive Debian's chromium (never a downloaded browser). Installed when missing and possible (root
# with apt); otherwise those tests are skipped and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
	     || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)) \
	     && echo "installed Debian's chromium for the page tests" \
	     || echo "could not install chromium: page tests will be skipped"; \
	  else echo "chromium is not installed: page tests will be skipped (apt-get install chromium)"; fi; }

test: install chromium ## run the whole test suite against the real broker and PostgreSQL
	$(UV) run --frozen pytest

lint: install ## ruff and mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy libs services tests

format: install ## apply ruff's fixes and formatting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

bench: install ## drive messages ingest -> assignment: throughput, latency, CPU and round trips per message
	$(UV) run --frozen switchboard-dev bench $(BENCH_ARGS)

bench-routing: install ## one routing decision at 5,000 online agents and 10,000 waiting: ms, SQL vs policy, plans
	$(UV) run --frozen switchboard-dev bench-routing $(BENCH_ARGS)

faults: install ## kill, crash and pause parts of the system under load; check nothing acknowledged is lost
	$(UV) run --frozen switchboard-dev faults $(FAULTS_ARGS)

clean: ## remove the environment and the development data
	rm -rf .venv .tools .devstack .pytest_cache .mypy_cache .ruff_cache
