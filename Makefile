# haven: build, lint and test from a clean clone.
#
#   make test         lint + the whole pytest suite (what .ci/run runs)
#   make lint         ruff check, mypy (strict), lint-imports
#   make docs         regenerate docs/reference/ from the code, build the site into build/site (strict)
#   make demo         run `haven demo` from the project venv
#   make system-deps  install the Debian packages the tests need (servers, libvirt-dev, gcc) if missing
#   make agent-deps   build libvirt-python into .venv from requirements-agent.lock (after system-deps)
#   make lock         regenerate requirements.lock and requirements-agent.lock (needs the package index)
#   make lock-tools   regenerate the pinned locks of the external tools (TOOL=name for one)
#   make clean        remove .venv and tool caches
#
# `make venv` (used by the targets above) creates .venv with `python3 -m venv`
# and installs requirements.lock with --require-hashes; it is redone only when
# requirements.lock or pyproject.toml change (stamp file .venv/.stamp).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

# --- lock file ---------------------------------------------------------------
# uv runs from a throw-away venv outside the repo; its version is pinned so
# that the lock's format does not drift.  Pass LOCK_FLAGS=--upgrade to move
# every pin to the newest release (by default existing pins are kept).
UV_VERSION ?= 0.13.9
LOCK_VENV  ?= /tmp/haven-lock-tools
LOCK_FLAGS ?=
LOCK_CMD   := uv pip compile pyproject.toml --extra dev --group pyproject.toml:build \
              --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
              --no-config --no-header -o requirements.lock
# The host agent's extra (libvirt-python, sdist-only) in a lock of its own, constrained by the main
# lock so that every shared pin agrees.
LOCK_AGENT_CMD := uv pip compile pyproject.toml --extra agent --group pyproject.toml:build -c requirements.lock \
              --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
              --no-config --no-header -o requirements-agent.lock
AGENT_STAMP := $(VENV)/.agent-stamp

.PHONY: venv demo system-deps agent-deps lint test clean lock lock-tools uv docs

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	  || { echo "make venv: haven needs Python 3.11; '$(PYTHON)' is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	@if [ ! -x $(BIN)/python ]; then \
	  echo "+ $(PYTHON) -m venv $(VENV)"; \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); bash scripts/ensure-venv-support.sh && $(PYTHON) -m venv $(VENV); }; fi
	$(BIN)/python -m pip install --progress-bar off --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --progress-bar off --no-deps --no-build-isolation -e .
	@touch $@

demo: venv
	$(BIN)/haven demo

system-deps:
	bash scripts/install-system-deps.sh

# libvirt-python (for `haven agent` and its tests) compiles against libvirt-dev, so it comes after
# system-deps; `make demo` does not need it.  Redone only when requirements-agent.lock changes.
agent-deps: venv system-deps
	@if [ ! -f $(AGENT_STAMP) ] || [ requirements-agent.lock -nt $(AGENT_STAMP) ] || [ $(STAMP) -nt $(AGENT_STAMP) ]; then \
	  echo "+ $(BIN)/python -m pip install --require-hashes -r requirements-agent.lock"; \
	  $(BIN)/python -m pip install --progress-bar off --require-hashes -r requirements-agent.lock; \
	  touch $(AGENT_STAMP); fi

# Every tool runs even if an earlier one failed, so one run shows all problems.
# ($(wildcard) because git does not keep an empty tests/ directory.)
LINT_PATHS := $(wildcard src tests scripts bench)
lint: venv
	@status=0; \
	echo "+ ruff check $(LINT_PATHS)"; $(BIN)/ruff check $(LINT_PATHS) || status=1; \
	echo "+ mypy";                 $(BIN)/mypy                 || status=1; \
	echo "+ lint-imports";         $(BIN)/lint-imports         || status=1; \
	if [ $$status -ne 0 ]; then echo "make lint: FAILED" >&2; fi; \
	exit $$status

# Lint and pytest both run; the target fails if either fails.  pytest's exit
# code 5 (no tests collected) is a failure too. haven's own modules are compiled to bytecode first: the
# editable install compiles none, and where PYTHONDONTWRITEBYTECODE is set (this machine's environment)
# every `haven` process the tests start compiled all of them again (haven --help 3.3 s, 2.3 s with them).
test: venv system-deps agent-deps
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	echo "+ python -m compileall -q src"; $(BIN)/python -m compileall -q src >/dev/null || status=1; \
	echo "+ pytest"; rc=0; \
	if [ -d tests ]; then $(BIN)/pytest || rc=$$?; \
	else echo "make test: there is no tests/ directory" >&2; rc=5; fi; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected (pytest exit 5): failing" >&2; fi; \
	if [ $$rc -ne 0 ]; then status=1; fi; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED" >&2; fi; \
	exit $$status

# tests/docs/test_site.py checks the same: references current, `mkdocs build --strict` clean.
docs: venv
	$(BIN)/python scripts/gen_docs.py
	$(BIN)/mkdocs build --strict

uv:
	@if [ ! -x $(LOCK_VENV)/bin/uv ] || [ "$$($(LOCK_VENV)/bin/uv --version | cut -d' ' -f2)" != "$(UV_VERSION)" ]; then \
	  echo "+ installing uv==$(UV_VERSION) into $(LOCK_VENV)"; \
	  $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'; fi

lock: uv
	$(LOCK_VENV)/bin/$(LOCK_CMD) $(LOCK_FLAGS)
	@{ echo "# Pinned runtime + dev (+ build) dependencies of haven, with hashes; Python 3.11, linux x86_64."; \
	   echo "# Install: pip install --require-hashes -r requirements.lock   (make venv does this)"; \
	   echo "# Regenerate with 'make lock', which runs (uv==$(UV_VERSION), from a throw-away venv):"; \
	   echo "#   $(strip $(LOCK_CMD))"; \
	   cat requirements.lock; } > requirements.lock.tmp
	@mv requirements.lock.tmp requirements.lock
	@echo "wrote requirements.lock"
	$(LOCK_VENV)/bin/$(LOCK_AGENT_CMD) $(LOCK_FLAGS)
	@{ echo "# requirements.lock plus the host agent's extra (libvirt-python, built from source: needs gcc,"; \
	   echo "# pkg-config, libvirt-dev); pins agree with requirements.lock.  Install: make agent-deps"; \
	   echo "# Regenerate with 'make lock', which runs (uv==$(UV_VERSION), from a throw-away venv):"; \
	   echo "#   $(strip $(LOCK_AGENT_CMD))"; \
	   cat requirements-agent.lock; } > requirements-agent.lock.tmp
	@mv requirements-agent.lock.tmp requirements-agent.lock
	@echo "wrote requirements-agent.lock"

# External tools (Keystone, emulators, monitors) run from their own venvs, built by
# haven.lab.toolenv from src/haven/lab/locks/<tool>.lock; <tool>.in lists what to pin.
TOOL_LOCKS := src/haven/lab/locks
TOOL       ?= $(patsubst $(TOOL_LOCKS)/%.in,%,$(wildcard $(TOOL_LOCKS)/*.in))
lock-tools: uv
	@for tool in $(TOOL); do \
	  echo "+ locking $$tool"; \
	  $(LOCK_VENV)/bin/uv pip compile $(TOOL_LOCKS)/$$tool.in --generate-hashes --python-version 3.11 \
	    --python-platform x86_64-unknown-linux-gnu --no-config --no-header $(LOCK_FLAGS) \
	    -o $(TOOL_LOCKS)/$$tool.lock; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist src/*.egg-info
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
