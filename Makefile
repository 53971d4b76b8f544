# Herald: `make run` to try it, `make test` to test it. Both work on a fresh machine.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test test-loaded install npm browser migrate demo bench clean help package layer deploy-check lambda-env

help:
	@echo "make run    - install, migrate, load demo data, serve http://$(HOST):$(PORT)"
	@echo "make test   - install what the tests need and run the whole suite"
	@echo "make test-loaded - the whole suite with the CPU oversubscribed (BUSY=4 spinning processes)"
	@echo "make bench  - push latency, fan-out, POST under fan-out, read paths at 1M rows, push throughput at 0/10/30 ms, search at 1M posts (PostgreSQL; bench/results/)"
	@echo "make package      - the Lambda zip and its layer from runtime requirements only (dist/)"
	@echo "make deploy-check - zappa deploy, status, undeploy against a local moto server"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# MQTT.js for the browser comes from npm and is served from node_modules (see settings.STATICFILES_DIRS).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

npm: node_modules/.installed

install: $(VENV)/.installed npm

# Browser tests drive Debian's Chromium (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium for the browser tests (apt-get)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "Chromium is required for the browser tests: apt-get install chromium"; exit 1; }

migrate: install
	DEBUG=1 $(BIN)/python manage.py migrate --no-input

demo: migrate
	DEBUG=1 $(BIN)/python manage.py seed_demo

# The IoT emulator first (so the demo data's notifications are pushed, not left pending), then
# the task worker (follower fan-out), the pending-push retrier and the dev server; Ctrl-C stops
# all of them.
run: migrate
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT; \
	DEBUG=1 $(BIN)/python manage.py runlocaliot & \
	for _ in $$(seq 100); do (: > /dev/tcp/$${LOCALIOT_HOST:-127.0.0.1}/$${LOCALIOT_HTTP_PORT:-8084}) 2>/dev/null && break; sleep 0.1; done; \
	DEBUG=1 $(BIN)/python manage.py seed_demo && \
	echo "Herald at http://$(HOST):$(PORT)/  (demo logins: alice, bob, carol, dave / herald-demo-pass)" && \
	{ DEBUG=1 $(BIN)/python manage.py db_worker --interval 0.2 & \
	DEBUG=1 $(BIN)/python manage.py deliver_pending --loop 1 & \
	DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT); }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The whole suite while BUSY processes (4 by default: twice the cores of a small machine) spin on
# the CPU. A test that guesses how fast the machine is fails here; every test must pass.
BUSY ?= 4
test-loaded: install browser
	@pids=""; for _ in $$(seq $(BUSY)); do $(BIN)/python -c 'while True: pass' & pids="$$pids $$!"; done; \
	trap 'kill $$pids 2>/dev/null' EXIT; \
	echo "make test-loaded: $(BUSY) busy processes on $$(nproc) cores"; \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (not tests): writes bench/results/. See bench/README.md. All but push_latency need
# PostgreSQL: DATABASE_URL names the server (created if missing; each benchmark works in its own
# scratch database beside it). Every benchmark runs even when one misses its target; the chart
# is drawn from what they wrote, and the target fails at the end if any of them did.
bench: install
	@export DATABASE_URL="$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/herald_bench}"; \
	$(BIN)/python bench/benchlib.py || exit 1; \
	failed=""; \
	for b in "push_latency.py --count 1000 --rate 20" "fanout.py --followers 10000 100000" \
	         "post_under_fanout.py" "read_paths.py" "push_throughput.py" "people.py" "search.py" "live_slo.py" \
	         "digests.py" "webpush.py"; do \
	  echo "== bench/$$b"; $(BIN)/python bench/$$b || failed="$$failed $${b%% *}"; \
	done; \
	$(BIN)/python bench/chart.py; \
	if [ -n "$$failed" ]; then echo "bench: missed a target or failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) .venv-lambda dist node_modules staticfiles .pytest_cache

# --- AWS Lambda (Zappa). The package is built from its own virtualenv, .venv-lambda, holding the
# runtime requirements and Zappa only: Zappa zips that environment's site-packages, so nothing from
# requirements-dev.txt can get in. STAGE picks the zappa_settings.json stage (dev, production).
STAGE         ?= dev
LAMBDA_PYTHON ?= python3.11
LAMBDA_VENV   := .venv-lambda
LAMBDA_BIN    := $(LAMBDA_VENV)/bin
LAMBDA_ZIP    ?= dist/herald-$(STAGE).zip
LAMBDA_LAYER  ?= $(LAMBDA_ZIP:.zip=-layer.zip)
ZAPPA         := VIRTUAL_ENV=$(CURDIR)/$(LAMBDA_VENV) PATH=$(CURDIR)/$(LAMBDA_BIN):$$PATH $(LAMBDA_BIN)/zappa

$(LAMBDA_BIN)/python:
	$(LAMBDA_PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_BIN)/pip install -q --upgrade pip

# Lambda's Amazon Linux 2 has glibc 2.26: the manylinux2014 wheels (glibc 2.17) of the packages
# with compiled code, not the manylinux_2_28/2_34 ones pip prefers on a newer build machine
# (scripts/check_package.py refuses those). LAMBDA_WHEELS: the ones whose newest wheel needs more.
LAMBDA_WHEELS := $(foreach p,pillow cryptography,$(p)==$(shell sed -n 's/^$(p)==//p' requirements.txt))

$(LAMBDA_VENV)/.installed: requirements.txt requirements-deploy.txt | $(LAMBDA_BIN)/python
	$(LAMBDA_BIN)/pip install -q -r requirements-deploy.txt
	rm -rf $(LAMBDA_VENV)/wheels
	$(LAMBDA_BIN)/pip download -q --no-deps --only-binary :all: --platform manylinux2014_x86_64 \
	  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 -d $(LAMBDA_VENV)/wheels $(LAMBDA_WHEELS)
	$(LAMBDA_BIN)/pip install -q --force-reinstall --no-deps $(LAMBDA_VENV)/wheels/*.whl
	touch $@

lambda-env: $(LAMBDA_VENV)/.installed

# `zappa package` runs the hooks in zappa_settings.json (scripts/zappa_hooks.py): collectstatic
# before (hashed, compressed names; MQTT.js from node_modules), finish_package.py after (bytecode
# Lambda can use, libraries without their sources; unused AWS API models, translations, build-only
# libraries and duplicate static files dropped; binaries stripped); `zappa deploy` and `zappa
# update` build the same way. check_package.py then fails on dev-only packages, size or missing static files, and runs the
# package through Zappa's handler in an isolated interpreter.
# The layer (scripts/build_layer.py): the compiled libraries only some requests need (Web Push's
# cryptography, Pillow), which finish_package.py leaves out of the function's zip; Lambda mounts
# it at /opt. scripts/publish_layer.py publishes it and names its version in zappa_settings.json.
layer: lambda-env
	@mkdir -p $(dir $(LAMBDA_LAYER))
	$(LAMBDA_BIN)/python scripts/build_layer.py $(LAMBDA_LAYER) --stage $(STAGE)

package: layer npm
	@mkdir -p $(dir $(LAMBDA_ZIP)) && rm -f $(LAMBDA_ZIP)
	$(ZAPPA) package $(STAGE) -o $(LAMBDA_ZIP)
	$(LAMBDA_BIN)/python scripts/check_package.py $(LAMBDA_ZIP) --layer $(LAMBDA_LAYER) --smoke
	@echo "Lambda package: $(LAMBDA_ZIP) ($$(stat -c %s $(LAMBDA_ZIP)) bytes), layer $(LAMBDA_LAYER) ($$(stat -c %s $(LAMBDA_LAYER)) bytes)"

# zappa deploy -> status -> undeploy against a local moto server (no AWS account, nothing leaves
# this machine). The layer is published first; zappa deploy builds the package itself, with the
# same hooks as `make package`.
deploy-check: layer npm install
	$(BIN)/python scripts/deploy_check.py --stage $(STAGE) --zappa-venv $(LAMBDA_VENV) --layer $(LAMBDA_LAYER)
