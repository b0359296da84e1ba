# endcall — the two commands a newcomer needs: `make demo` and `make test`.
# Both work from a clean clone on a fresh machine: they create .venv, install the package,
# run `npm ci` in web/ (and the example page / e2e harness) and apt-get what is missing.
# `make install` does only that set-up (for people who only write an agent).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PAGE := examples/web

.PHONY: test demo install system-deps lint typecheck pytest web web-test clean

test: install lint typecheck pytest web-test

demo: install
	$(BIN)/endcall demo

install: $(VENV)/.installed web/node_modules/.installed $(PAGE)/dist/index.html system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# The example interview page (Vite + React; `endcall` is aliased to web/src) and its
# playwright-core driver, used by `make demo` and the browser tests.
$(PAGE)/node_modules/.installed: $(PAGE)/package.json $(PAGE)/package-lock.json
	cd $(PAGE) && npm ci --no-audit --no-fund
	touch $@

$(PAGE)/dist/index.html: $(PAGE)/node_modules/.installed $(shell find $(PAGE)/src web/src -type f 2>/dev/null) $(PAGE)/index.html $(PAGE)/vite.config.ts
	cd $(PAGE) && npm run build

# Debian packages the tests start themselves: Chromium for the browser tests,
# PostgreSQL for the fleet outbox. Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

lint:
	$(BIN)/ruff check py tests bench examples
	$(BIN)/ruff format --check py tests bench examples

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q

web-test:
	cd web && npm run typecheck && npm run build && npm test && npm run size
	cd $(PAGE) && npm run typecheck

clean:
	rm -rf $(VENV) web/node_modules web/dist $(PAGE)/node_modules $(PAGE)/dist .pytest_cache .mypy_cache .ruff_cache
