# The README's commands: `make run` starts everything, `make test` runs every test,
# `make bench` runs the benchmarks (bench/README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test faults bench install browser gpg axe clean screenshots

install: $(STAMP)

$(STAMP): pyproject.toml plugins/postback/pyproject.toml plugins/ftp/pyproject.toml plugins/s3/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]" -e plugins/postback -e plugins/ftp -e plugins/s3
	touch $(STAMP)

# `make run PORT=8080` (and HOST=0.0.0.0 to listen beyond this machine).
HOST ?= 127.0.0.1
PORT ?= 5000

run: $(STAMP) gpg
	$(BIN)/exporter run --host $(HOST) --port $(PORT)

# The screen tests drive Debian's chromium: installed here when missing and we may (apt and
# root). Otherwise they are skipped, and pytest's last line says how to enable them.
browser:
	@if [ -z "$$EXPORTER_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1 \
	    && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the screen tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		  || echo "could not install chromium: the screen tests will be skipped"; fi

# Daily files encrypted to a partner's PGP key use Debian's gnupg (python-gnupg drives gpg):
# installed here when missing and we may, as chromium is.
gpg:
	@if ! command -v gpg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's gnupg for PGP-encrypted daily files"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnupg >/dev/null) \
		  || echo "could not install gnupg: PGP encryption of daily files will not work"; fi

# axe-core (npm registry) for the screen tests' accessibility check; pinned by tests/e2e/node/package-lock.json.
AXE := tests/e2e/node/node_modules/axe-core/axe.min.js

axe: $(AXE)

$(AXE): tests/e2e/node/package.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/e2e/node --no-audit --no-fund --silent \
	  || echo "could not install axe-core: the accessibility tests will be skipped"; \
	else echo "npm not found: the accessibility tests will be skipped"; fi

test: $(STAMP) browser gpg axe
	$(BIN)/pytest $(PYTEST_ARGS)

# The README's screenshots, taken by the screen test that keeps them current (tests/e2e/test_readme_screenshots.py).
screenshots: $(STAMP) browser
	EXPORTER_README_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/e2e/test_readme_screenshots.py

# The fault suite (tests/reliability): real processes killed, Redis restarted empty, database
# connections cut, a flapping partner. Set EXPORTER_TEST_DATABASE_URL for PostgreSQL (CI does).
faults: $(STAMP)
	$(BIN)/pytest tests/reliability -m reliability -s -q $(PYTEST_ARGS)

# Each bench prints its figures and ends with its ratio; the mapping and daily-file ones run when present.
# With EXPORTER_BENCH_BIGDB_URL (and EXPORTER_BENCH_DATABASE_URL) set to PostgreSQL databases of
# their own, the big-database benches run too (bench/bigdb.py builds it once, in minutes).
BENCHES := dispatch workers limits intake latency delay mapping daily_file
BIGDB_BENCHES := bigdb pages

bench: $(STAMP)
	@set -e; for name in $(BENCHES) $(if $(EXPORTER_BENCH_BIGDB_URL),$(BIGDB_BENCHES)); do \
		if [ -f bench/bench_$$name.py ]; then \
			echo "== bench/bench_$$name.py"; started=$$(date +%s); $(BIN)/python bench/bench_$$name.py; \
			echo "($$(( $$(date +%s) - started )) s)"; echo; fi; done

clean:
	rm -rf $(VENV)
