"""Calibration of low-cost sensors and air-quality indices: pure functions, no MQTT, no HTTP.

The gateway calls `calibration.models` on every reading; the CLI (`citysense calibrate`)
fits models against reference stations, re-applies them to stored raw data and checks drift.
Only `ingest.calibration_store` touches the database.
"""
