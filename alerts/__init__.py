"""Alerts: rules evaluated on a clock, alert state in the database, delivery by webhook, e-mail and MQTT."""
