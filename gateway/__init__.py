"""The async MQTT consumer: decode, validate, calibrate, flag, then hand rows to ingest."""
