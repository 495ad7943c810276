# Two commands: `make run` and `make test`. Both set up .venv when it is missing or stale.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install client chromium run test lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[embedded,test,bench]'
	touch $@

install: $(STAMP)

# The counter app (its sources in static/): npm ci when node_modules is missing or the lock
# file is newer; esbuild to static/dist/ when a source is newer than the manifest it writes last.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

APP_SOURCES := $(wildcard static/*.html static/*.js static/*.mjs static/*.css)

static/dist/manifest.json: node_modules/.installed $(APP_SOURCES)
	node static/build.mjs

client: static/dist/manifest.json

# The browser tests drive Debian's chromium (CI runs as root).
chromium:
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

run: install client
	$(PY) -m server $(ARGS)

test: install client chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check server tests scripts
	$(VENV)/bin/ruff format --check server tests scripts

clean:
	rm -rf $(VENV) *.egg-info node_modules static/dist
