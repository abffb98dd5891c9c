# Firmware targets, included by the top-level Makefile (`-include firmware/firmware.mk`).
# Only uses files in the repo: the pinned package.json + package-lock.json in firmware/tests_mpy.

FIRMWARE_MPY_DIR := firmware/tests_mpy
FIRMWARE_MPY_PKG := $(FIRMWARE_MPY_DIR)/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs

.PHONY: firmware-test-deps firmware-build firmware-test-mpy

# MicroPython 1.27 (WebAssembly) for running the firmware tests under real MicroPython.
# Idempotent: does nothing when the pinned package is already installed.
firmware-test-deps: $(FIRMWARE_MPY_PKG)

$(FIRMWARE_MPY_PKG): $(FIRMWARE_MPY_DIR)/package.json $(FIRMWARE_MPY_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm (Node.js >= 18) is needed for the MicroPython tests"; exit 1; }
	cd $(FIRMWARE_MPY_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

firmware-build: $(STAMP)
	$(VENV)/bin/citysense firmware build

firmware-test-mpy: firmware-test-deps
	node $(FIRMWARE_MPY_DIR)/run.mjs
