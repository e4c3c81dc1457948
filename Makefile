# Two commands for a newcomer:
#   make deploy   venv + everything installed, then site.yml against inventories/local
#                 (or INVENTORY=inventories/<env>; extra ansible-playbook flags in ARGS=)
#   make test     venv + everything installed, then the whole suite (tests/harness/suite.sh)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
INVENTORY ?= inventories/local
ARGS ?=
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: venv deploy test lint sanity units pytest molecule build install docs clean pip-locks

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

deploy: venv
	ansible-playbook site.yml -i $(INVENTORY) $(ARGS)

test: venv
	tests/harness/suite.sh

lint: venv
	yamllint -s . && ansible-lint --profile production && ruff check .

sanity: venv
	tests/harness/ansible-test.sh sanity

units: venv
	tests/harness/ansible-test.sh units

pytest: venv
	pytest -p no:cacheprovider -n "$${LLMOPS_PYTEST_WORKERS:-2}" --dist loadfile

molecule: venv
	molecule test --all

build: venv
	ansible-galaxy collection build --force --output-path .build

# Installs the built collection into COLLECTIONS_PATH. ansible-galaxy runs from .build/: inside the
# checkout, ansible.cfg's collections path (the checkout itself) would make it report "Nothing to do".
COLLECTIONS_PATH ?= $(HOME)/.ansible/collections
install: build
	cd .build && ansible-galaxy collection install --force -p "$(COLLECTIONS_PATH)" llmops-gpu_stack-$$(sed -n 's/^version: *//p' ../galaxy.yml).tar.gz

clean:
	rm -rf .build .cache/harness tests/output

# The variable tables of roles/*/README.md, generated from meta/argument_specs.yml (tools/role_docs.py;
# `python tools/role_docs.py --check` and tests/unit/test_role_docs.py fail when one is stale).
.PHONY: docs
docs: venv
	python tools/role_docs.py

# model_store's hash locks (roles/model_store/files/pip/*.txt) for the client versions of its defaults:
# run after changing one of them, review the diff (tools/pip_locks.sh; test_pip_lock.py fails while stale).
pip-locks:
	tools/pip_locks.sh
