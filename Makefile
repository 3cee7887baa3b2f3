# The README's commands: `make run` starts everything, `make test` runs every test,
# `make bench` runs the benchmarks (bench/README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test faults bench install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml plugins/postback/pyproject.toml plugins/ftp/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]" -e plugins/postback -e plugins/ftp
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/exporter run

# The screen tests drive Debian's chromium when it is installed (CI installs it);
# elsewhere Playwright fetches its own Chromium once.
browser: $(STAMP)
	@if [ -z "$$EXPORTER_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1; then \
		$(BIN)/python -m playwright install chromium; fi

test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

# The fault suite (tests/reliability): real processes killed, Redis restarted empty, database
# connections cut, a flapping partner. Set EXPORTER_TEST_DATABASE_URL for PostgreSQL (CI does).
faults: $(STAMP)
	$(BIN)/pytest tests/reliability -m reliability -s -q $(PYTEST_ARGS)

# Each bench prints its figures and ends with its ratio; the mapping and daily-file ones run when present.
BENCHES := dispatch workers intake latency delay mapping daily_file

bench: $(STAMP)
	@set -e; for name in $(BENCHES); do \
		if [ -f bench/bench_$$name.py ]; then \
			echo "== bench/bench_$$name.py"; started=$$(date +%s); $(BIN)/python bench/bench_$$name.py; \
			echo "($$(( $$(date +%s) - started )) s)"; echo; fi; done

clean:
	rm -rf $(VENV)
