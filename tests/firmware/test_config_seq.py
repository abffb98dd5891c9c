"""Device config and the reboot-proof sequence counter (runs on CPython and MicroPython)."""

import json

import config
import log
from fwtest_support import Collector, raises, tmp_dir
from seq import SeqCounter


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_config_uses_defaults_without_a_file():
    cfg = config.Config(tmp_dir() + "/config.json")
    assert cfg["interval_s"] == 60
    assert not cfg.is_provisioned()
    assert cfg.error == "no config file"


def test_config_corrupt_file_is_logged_set_aside_and_defaults_used():
    path = tmp_dir() + "/config.json"
    _write(path, '{"id": "ab-01", "interval_s": ')
    seen = Collector()
    old, log.sink = log.sink, seen
    try:
        cfg = config.Config(path)
    finally:
        log.sink = old
    assert cfg["interval_s"] == 60
    assert "config_invalid" in seen.events()
    with open(path + ".bad") as f:
        assert f.read().startswith('{"id"')


def test_config_validation_names_every_bad_field():
    exc = raises(config.ConfigError, config.check, {"interval_s": 0, "mqtt_port": "x", "id": "Bad Id", "foo": 1})
    text = str(exc)
    assert "'interval_s' value 0 outside 1..86400" in text
    assert "'mqtt_port' must be int" in text
    assert "'id' 'Bad Id' must match" in text
    assert "unknown field 'foo'" in text


def test_config_receipt_timeout_defaults_to_a_minute_and_is_range_checked():
    cfg = config.Config(tmp_dir() + "/config.json")
    assert cfg["receipt_timeout_s"] == 60
    config.check({"receipt_timeout_s": 5})
    for bad in (0, 3601, "60", True):
        exc = raises(config.ConfigError, config.check, {"receipt_timeout_s": bad})
        assert "receipt_timeout_s" in str(exc)
    exc = raises(config.ConfigError, cfg.apply_remote, b'{"version": 1, "receipt_timeout_s": 5}')
    assert "may not be set remotely" in str(exc)


def test_config_file_with_a_non_string_id_is_set_aside_not_a_crash():
    # check() used to call valid_device_id(5) after noting the wrong type: a TypeError
    # that Config.load does not catch, so such a file crash-looped the board.
    exc = raises(config.ConfigError, config.check, {"id": 5})
    assert "'id' must be str" in str(exc)
    path = tmp_dir() + "/config.json"
    _write(path, '{"id": 5}')
    cfg = config.Config(path)
    assert cfg.error is not None and "'id' must be str" in cfg.error
    assert not cfg.is_provisioned()


def test_config_refuses_thresholds_in_the_wrong_order():
    exc = raises(config.ConfigError, config.check, {"th_low_ut": 20.0, "th_high_ut": 10.0})
    assert "th_low_ut" in str(exc)


def test_config_remote_update_applies_a_newer_version_and_persists():
    path = tmp_dir() + "/config.json"
    cfg = config.Config(path)
    cfg.update({"id": "tp-school-0042", "wifi_ssid": "school", "mqtt_host": "10.0.0.2"})
    assert cfg.apply_remote(b'{"version": 3, "interval_s": 120, "th_high_ut": 15}') is True
    assert cfg["interval_s"] == 120 and cfg["th_high_ut"] == 15.0
    assert cfg.apply_remote(b'{"version": 3, "interval_s": 30}') is False  # not newer
    again = config.Config(path)
    assert again["version"] == 3 and again["interval_s"] == 120 and again.is_provisioned()


def test_config_remote_update_refuses_device_credentials_and_bad_values():
    cfg = config.Config(tmp_dir() + "/config.json")
    exc = raises(config.ConfigError, cfg.apply_remote, b'{"version": 2, "mqtt_password": "x"}')
    assert "may not be set remotely" in str(exc)
    exc = raises(config.ConfigError, cfg.apply_remote, b'{"version": 2, "interval_s": -5}')
    assert "interval_s" in str(exc)
    raises(config.ConfigError, cfg.apply_remote, b"not json")
    assert cfg["version"] == 0 and cfg["interval_s"] == 60


def test_config_file_is_json_holding_only_changes():
    path = tmp_dir() + "/config.json"
    cfg = config.Config(path)
    cfg.update({"id": "ab-01"})
    with open(path) as f:
        assert json.load(f) == {"id": "ab-01"}


def test_seq_survives_reboot_and_never_repeats():
    path = tmp_dir() + "/seq.txt"
    a = SeqCounter(path, block=10)
    got = [a.take() for _ in range(25)]
    assert got == list(range(25))
    b = SeqCounter(path, block=10)  # reboot without a clean shutdown
    assert b.take() >= 25


def test_seq_starts_over_from_a_corrupt_file_with_a_log_line():
    path = tmp_dir() + "/seq.txt"
    _write(path, "xyz")
    seen = Collector()
    old, log.sink = log.sink, seen
    try:
        s = SeqCounter(path)
    finally:
        log.sink = old
    assert s.take() == 0
    assert "seq_file_corrupt" in seen.events()
