"""MicroPython side of run.mjs: import each portable test module, run every test_* function."""

import sys

sys.path.append("/tests")

MODULES = (
    "test_pms5003",
    "test_sht31_bme280_qmc5883l",
    "test_flashqueue",
    "test_device_receipts",
    "test_config_seq",
    "test_parking_detector",
    "test_flag_app",
    "test_lorawan_payload_bytes",
)


def main():
    import log

    log.sink = lambda line: None  # keep the output to results
    passed = failed = 0
    for name in MODULES:
        mod = __import__(name)
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            try:
                getattr(mod, attr)()
                print("PASS %s.%s" % (name, attr))
                passed += 1
            except Exception as exc:  # noqa: BLE001
                print("FAIL %s.%s %r" % (name, attr, exc))
                sys.print_exception(exc)
                failed += 1
    print("SUMMARY passed=%d failed=%d" % (passed, failed))


main()
