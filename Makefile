# SPDX-License-Identifier: GPL-3.0-or-later
# zerotrust.workloads: one entry point for set-up, the lab, the demo, the tests and the benchmarks.
# Every target that needs it does the whole set-up itself (Debian packages, the virtual
# environment, the collection link), so each works on a fresh machine. Run as root: the lab
# builds network namespaces.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SCENARIO ?= lab/scenarios/seed.yml
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
COLLECTION_LINK := $(ROOT)/.collections/ansible_collections/zerotrust/workloads
# The controller Python: 3.12. pyenv's shim for python3.12 fails unless that version is
# selected, so look at pyenv's versions directly first.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.collections
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PATH := $(BIN):$(PATH)

.PHONY: help setup system-packages venv collection awx-collection demo test lint sanity unit integration molecule \
        lab-up lab-down lab-status probe docs dist bench bench-inventory bench-compile bench-apply bench-dataplane \
        bench-enforce bench-audit bench-sync clean

help:
	@echo "make demo       set up, bring the lab up, enforce SCENARIO (default $(SCENARIO)), compare truth tables"
	@echo "make test       set up and run every check (lint, sanity, unit, integration, molecule)"
	@echo "make lab-up / lab-down / probe    the lab alone (SCENARIO=file)"
	@echo "make bench      every benchmark; bench-NAME for one"

setup: system-packages venv collection

system-packages:
	@bash scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it or pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

collection:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../.. $(COLLECTION_LINK)

# awx.awx, whose modules' documented options tests/integration/test_awx_env.py checks awx/controller.yml
# against: extracted from the pinned `ansible` wheel (sha256-checked) into .cache/awx-collection, never installed.
awx-collection: venv
	@$(PY) scripts/awx_collection.py

# The main job on the lab: a fresh lab, the open truth table, enforcement, and the truth
# table again beside the expected one (exit status 1 on any difference).
demo: setup
	$(PY) -m lab down
	$(PY) -m lab up --scenario $(SCENARIO)
	@echo "== truth table before enforcement (no policy yet: as kube-proxy alone behaves, predicted by the oracle)"
	$(PY) -m lab probe --expect-open
	$(BIN)/ansible-playbook -f 10 -i .lab/inventory playbooks/enforce.yml -e enforce_policy_file=$(abspath $(SCENARIO))
	@echo "== truth table after enforcement, beside the expected one"
	$(PY) -m lab probe --expect-from-scenario

lab-up: setup
	$(PY) -m lab up --scenario $(SCENARIO)

lab-down: collection
	@if [ -x $(PY) ]; then $(PY) -m lab down; else echo "no venv: nothing the lab could have made"; fi

lab-status: collection
	$(PY) -m lab status

probe: setup
	$(PY) -m lab probe --expect-from-scenario

test: setup lint sanity unit integration molecule
	@echo "make test: every check passed"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy plugins lab benchmarks extensions
	$(BIN)/ansible-lint --profile production --offline roles playbooks
	$(BIN)/antsibull-changelog lint

sanity: setup $(ROOT)/.venv-sanity/.installed
	bash scripts/sanity.sh

# ansible-test sanity runs with --local in an environment of its own: its pinned linters
# (pylint, yamllint, ...) differ from the development tools' pins.
$(ROOT)/.venv-sanity/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(ROOT)/.venv-sanity
	$(ROOT)/.venv-sanity/bin/pip install --quiet --disable-pip-version-check "$$(grep '^ansible-core==' requirements-dev.txt)"
	cat $(ROOT)/.venv-sanity/lib/python3*/site-packages/ansible_test/_data/requirements/sanity.*.txt \
	  | grep -Ev '^(#|$$)' | sort -u > $(ROOT)/.venv-sanity/requirements.txt
	$(ROOT)/.venv-sanity/bin/pip install --quiet --disable-pip-version-check -r $(ROOT)/.venv-sanity/requirements.txt
	$(ROOT)/.venv-sanity/bin/python -W ignore -m compileall -q $(ROOT)/.venv-sanity/lib >/dev/null 2>&1 || true
	touch $@

unit: setup
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/docs

integration: setup awx-collection
	$(BIN)/pytest -q -p no:cacheprovider tests/integration

# Every molecule scenario as a pytest test (pytest-ansible's molecule integration, tests/molecule).
molecule: setup
	cd $(ROOT) && $(BIN)/pytest -q -p no:cacheprovider tests/molecule

docs: setup
	bash scripts/build-docs.sh --check

bench: bench-inventory bench-compile bench-apply bench-dataplane bench-enforce bench-audit bench-sync

bench-inventory bench-compile bench-apply bench-dataplane bench-enforce bench-audit bench-sync: bench-%: setup
	@if [ -f benchmarks/bench_$*.py ]; then $(PY) benchmarks/bench_$*.py; \
	 else echo "RESULT $* status=not-implemented"; fi

# The tarball users install: CHANGELOG.rst rendered, build_ignore applied (scripts/build-collection.sh).
dist: setup
	bash scripts/build-collection.sh $(ROOT)/.build/dist

clean: lab-down
	rm -rf .build .mypy_cache .ruff_cache .pytest_cache .hypothesis
