# `make run` launches the app on the shipped model; `make test` runs the whole suite.
# Both bootstrap .venv from scratch on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

.PHONY: run test lint browser clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# The browser test drives Debian's chromium (Playwright's own browser download cannot work here).
SUDO := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && echo "sudo -n")
# fonts-noto-cjk lets the Chinese page's screenshot show its characters.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the browser test"; \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: the browser test will be skipped"; }
	@fc-list 2>/dev/null | grep -qi "noto.*cjk" || { \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fonts-noto-cjk >/dev/null) \
	  || echo "could not install fonts-noto-cjk: Chinese screenshots will show boxes"; }

run: $(VENV)/.installed
	$(PY) app.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

test: $(VENV)/.dev browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
