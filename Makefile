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
NEXT := examples/nextjs
NODE := node
NODE_EXAMPLE := examples/node

.PHONY: test test-under-load demo install system-deps lint typecheck pytest web web-test nextjs-check node-test clean livekit-server toxiproxy

# livekit-server, built from the Go module proxy at a pinned tag (no prebuilt binary), into a
# git-ignored tools folder; built once, rebuilt only when missing.
LIVEKIT_SERVER_VERSION := v1.13.5
LIVEKIT_SERVER_FALLBACK := v1.13.4
TOOLS := .tools
LIVEKIT_SERVER := $(TOOLS)/bin/livekit-server
# toxiproxy (TCP fault proxy) for bench/report_loss.py's "signalling cut" scenario
TOXIPROXY_VERSION := v2.12.0
TOXIPROXY := $(TOOLS)/bin/toxiproxy-server
# real-server runs happen inside a network namespace made for the run (scripts/in-netns)
IN_NETNS := scripts/in-netns

test: install lint typecheck node-test pytest web-test

# The Python suite three times in a row while stress-ng keeps both cores busy: what a shared CI
# machine does to timing. A test that fails here waits on a sleep instead of an event.
UNDER_LOAD_RUNS ?= 3
test-under-load: install
	@command -v stress-ng >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq stress-ng >/dev/null; }
	@stress-ng --cpu 2 --timeout 4h --quiet & load=$$!; trap "kill $$load 2>/dev/null" EXIT; \
	failed=0; \
	for run in $$(seq 1 $(UNDER_LOAD_RUNS)); do \
	  echo "== run $$run of $(UNDER_LOAD_RUNS) under stress-ng --cpu 2"; \
	  $(IN_NETNS) $(BIN)/pytest -q || failed=$$((failed + 1)); \
	done; \
	echo "== $$failed of $(UNDER_LOAD_RUNS) runs under load failed"; [ $$failed = 0 ]

# `make demo AGENT=node` runs the same scenarios with the Node example agent (examples/node)
AGENT ?= python
demo: install
	$(IN_NETNS) $(BIN)/endcall demo --agent $(AGENT)

install: $(VENV)/.installed web/node_modules/.installed $(PAGE)/dist/index.html $(NEXT)/.next/BUILD_ID $(NODE)/dist/index.js $(NODE_EXAMPLE)/dist/interview_agent.js system-deps $(LIVEKIT_SERVER) $(TOXIPROXY)

livekit-server: $(LIVEKIT_SERVER)

toxiproxy: $(TOXIPROXY)

# toxiproxy's server and CLI from the Go module proxy at a pinned tag, like livekit-server;
# built once, rebuilt only when missing
$(TOXIPROXY):
	@command -v go >/dev/null 2>&1 || { echo "Go is needed to build toxiproxy"; exit 1; }
	@mkdir -p $(TOOLS)/bin $(TOOLS)/gobuild
	CGO_ENABLED=0 GOBIN=$(CURDIR)/$(TOOLS)/gobuild go install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv $(TOOLS)/gobuild/server $@
	CGO_ENABLED=0 GOBIN=$(CURDIR)/$(TOOLS)/gobuild go install github.com/Shopify/toxiproxy/v2/cmd/cli@$(TOXIPROXY_VERSION)
	mv $(TOOLS)/gobuild/cli $(TOOLS)/bin/toxiproxy-cli
	@echo "built $@ and $(TOOLS)/bin/toxiproxy-cli ($(TOXIPROXY_VERSION))"

$(LIVEKIT_SERVER):
	@command -v go >/dev/null 2>&1 || { echo "Go is needed to build livekit-server (go 1.26)"; exit 1; }
	@mkdir -p $(TOOLS)/bin $(TOOLS)/gobuild
	@for tag in $(LIVEKIT_SERVER_VERSION) $(LIVEKIT_SERVER_FALLBACK); do \
	  echo "building livekit-server $$tag with go install (CGO_ENABLED=0; a few minutes the first time) ..."; \
	  if CGO_ENABLED=0 GOBIN=$(CURDIR)/$(TOOLS)/gobuild go install github.com/livekit/livekit-server/cmd/server@$$tag; then \
	    mv $(TOOLS)/gobuild/server $@ && echo "built $@ ($$tag)" && exit 0; \
	  fi; \
	  echo "livekit-server $$tag did not build from the Go module proxy"; \
	done; \
	echo "no livekit-server tag built: see the go errors above"; exit 1

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

# The package as npm ships it (web/dist), which the Next.js example installs.
WEB_INPUTS := $(shell find web/src -type f 2>/dev/null) web/package.json web/tsup.config.ts
web/dist/index.js: web/node_modules/.installed $(WEB_INPUTS)
	cd web && npm run build

# The Next.js example (App Router, @livekit/components-react's session API), used by
# tests/e2e/test_e2e_nextjs.py. `endcall` is "file:../../web" installed as a copy of the built
# package (.npmrc: install-links), as from a registry: installed again when web/ changes (web-test
# rebuilding the same dist/ does not count). `next build` is bounded (timeout).
$(NEXT)/node_modules/.installed: $(NEXT)/package.json $(NEXT)/package-lock.json $(NEXT)/.npmrc $(WEB_INPUTS) | web/dist/index.js
	cd $(NEXT) && npm ci --no-audit --no-fund
	touch $@

$(NEXT)/.next/BUILD_ID: $(NEXT)/node_modules/.installed $(shell find $(NEXT)/app -type f 2>/dev/null) $(NEXT)/next.config.ts $(NEXT)/tsconfig.json
	cd $(NEXT) && NEXT_TELEMETRY_DISABLED=1 timeout 600 npm run build

# The Node agent package (npm `endcall-agent`, for @livekit/agents): `endcall` (the shared
# protocol codec) is "file:../web" installed as a copy of the built package, like the Next.js
# example; better-sqlite3 builds with node-gyp against the local Node headers.
NODE_INPUTS := $(shell find $(NODE)/src -type f 2>/dev/null) $(NODE)/tsconfig.json $(NODE)/tsconfig.build.json
$(NODE)/node_modules/.installed: $(NODE)/package.json $(NODE)/package-lock.json $(NODE)/.npmrc $(WEB_INPUTS) | web/dist/index.js
	cd $(NODE) && npm ci --no-audit --no-fund
	touch $@

$(NODE)/dist/index.js: $(NODE)/node_modules/.installed $(NODE_INPUTS)
	cd $(NODE) && npm run build

# The Node example interview agent (`endcall demo --agent node`, tests/e2e/test_e2e_node.py):
# `endcall-agent` is "file:../../node" installed as a copy of the built package, so it is
# installed again whenever node/ is rebuilt.
$(NODE_EXAMPLE)/node_modules/.installed: $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json $(NODE_EXAMPLE)/.npmrc $(NODE)/dist/index.js
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund
	touch $@

$(NODE_EXAMPLE)/dist/interview_agent.js: $(NODE_EXAMPLE)/node_modules/.installed $(wildcard $(NODE_EXAMPLE)/*.ts) $(NODE_EXAMPLE)/tsconfig.json
	cd $(NODE_EXAMPLE) && npm run build

# Debian packages the tests start themselves: Chromium for the browser tests, PostgreSQL for
# the fleet outbox, iproute2 for the test network namespace, espeak-ng for the candidate's fake
# microphone, prometheus (and promtool) for the alert rules' tests. Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

lint:
	$(BIN)/ruff check py tests bench examples
	$(BIN)/ruff format --check py tests bench examples

typecheck:
	$(BIN)/mypy

# the whole suite runs inside one network namespace: the real-LiveKit tests need its test
# address, and everything else is happy on its loopback
pytest:
	$(IN_NETNS) $(BIN)/pytest -q

web-test: nextjs-check
	cd web && npm run typecheck && npm run build && npm test && npm run size
	cd $(PAGE) && npm run typecheck

# `next build` of the Next.js example (a Server Component importing endcall's core, a client
# component importing endcall/react, route handlers on endcall/server), tsc --strict, and its
# client bundle (.next/static) checked for endcall/server and livekit-server-sdk code: none.
# the Node agent package: tsc --strict, its build, its unit tests (the shared vectors included)
node-test: $(NODE)/dist/index.js
	cd $(NODE) && npm run typecheck && npm test

nextjs-check: $(NEXT)/.next/BUILD_ID
	cd $(NEXT) && npm run typecheck && npm run check-bundle

clean:
	rm -rf $(VENV) $(TOOLS) web/node_modules web/dist $(PAGE)/node_modules $(PAGE)/dist $(NEXT)/node_modules $(NEXT)/.next $(NODE)/node_modules $(NODE)/dist $(NODE_EXAMPLE)/node_modules $(NODE_EXAMPLE)/dist .pytest_cache .mypy_cache .ruff_cache
