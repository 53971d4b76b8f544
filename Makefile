# Herald: `make run` to try it, `make test` to test it. Both work on a fresh machine.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test install npm browser migrate demo bench clean help

help:
	@echo "make run    - install, migrate, load demo data, serve http://$(HOST):$(PORT)"
	@echo "make test   - install what the tests need and run the whole suite"
	@echo "make bench  - push latency vs polling (bench/results/)"

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
# the pending-push retrier and the dev server; Ctrl-C stops all of them.
run: migrate
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT; \
	DEBUG=1 $(BIN)/python manage.py runlocaliot & \
	for _ in $$(seq 100); do (: > /dev/tcp/$${LOCALIOT_HOST:-127.0.0.1}/$${LOCALIOT_HTTP_PORT:-8084}) 2>/dev/null && break; sleep 0.1; done; \
	DEBUG=1 $(BIN)/python manage.py seed_demo && \
	echo "Herald at http://$(HOST):$(PORT)/  (demo logins: alice, bob, carol, dave / herald-demo-pass)" && \
	{ DEBUG=1 $(BIN)/python manage.py deliver_pending --loop 15 & \
	DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT); }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (not tests): writes bench/results/. See bench/README.md.
bench: install
	$(BIN)/python bench/push_latency.py --count 1000 --rate 20

clean:
	rm -rf $(VENV) node_modules staticfiles .pytest_cache
