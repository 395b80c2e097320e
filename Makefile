# `make run` launches the app on the shipped model; `make test` runs the whole suite.
# Both bootstrap .venv from scratch on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

.PHONY: run test lint browser clean cost web-runtime ort-web

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

# Two pytest workers share the two cores; the tests that measure time or use every core (marked alone: the cost
# suite among them) run after them, with nothing beside them.
test: $(VENV)/.dev browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not alone"
	$(PY) -m pytest -q -m alone

# The page's runtime (charrnn/web/): matvec.wasm is built from matvec.wat by wabt's wat2wasm, pinned and checked
# here, then committed with its checksum, so exporting a page needs no npm. Run this after editing matvec.wat.
WABT        := 1.0.39
WABT_SHA256 := a10d4f4b15b91de8ab2ccb4700ef12185736f0bc96ee809e53ab17f7ea743fd2
export WAT2WASM = const fs = require("fs"); require("../../artifacts/wabt/package")().then(wabt => \
  fs.writeFileSync("matvec.wasm", wabt.parseWat("matvec.wat", fs.readFileSync("matvec.wat", "utf8"), {simd: true}).toBinary({}).buffer))
web-runtime:
	rm -rf artifacts/wabt && mkdir -p artifacts/wabt
	cd artifacts/wabt && npm pack --silent wabt@$(WABT) >/dev/null \
	  && echo "$(WABT_SHA256)  wabt-$(WABT).tgz" | sha256sum -c --quiet && tar xzf wabt-$(WABT).tgz
	cd charrnn/web && node -e "$$WAT2WASM"
	cd charrnn/web && sha256sum matvec.wasm > SHA256SUMS

# onnxruntime-web (its single-threaded wasm build), pinned and checked, into artifacts/: bench/browser.py runs
# it beside the page's own runtime to show why the page does not use it.
# Its licence (MIT) is stated in the package.json copied beside the files.
ORT_WEB        := 1.31.1
ORT_WEB_SHA256 := bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c
ORT_WEB_FILES  := ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
ort-web:
	rm -rf artifacts/onnxruntime-web && mkdir -p artifacts/onnxruntime-web/npm
	cd artifacts/onnxruntime-web/npm && npm pack --silent onnxruntime-web@$(ORT_WEB) >/dev/null \
	  && echo "$(ORT_WEB_SHA256)  onnxruntime-web-$(ORT_WEB).tgz" | sha256sum -c --quiet \
	  && tar xzf onnxruntime-web-$(ORT_WEB).tgz
	cd artifacts/onnxruntime-web && cp npm/package/package.json $(addprefix npm/package/dist/,$(ORT_WEB_FILES)) . \
	  && rm -rf npm && sha256sum $(ORT_WEB_FILES) package.json > SHA256SUMS

# Every endpoint at its largest inputs against the budgets in webapp/limits.py, with its table (part of `make test`).
cost: $(VENV)/.dev
	$(PY) -m pytest -q -s tests/test_cost.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
