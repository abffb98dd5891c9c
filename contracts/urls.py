"""Parsing of mqtt:// URLs, shared by the gateway, the simulator and the bench, and their redaction for logs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Split a broker URL; a missing port means 1883 (8883 for mqtts)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"not an MQTT URL (mqtt://host:port): {url!r}")
    tls = parts.scheme == "mqtts"
    if not parts.hostname:
        raise ValueError(f"MQTT URL has no host: {url!r}")
    return MqttEndpoint(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


REDACTED = "***"
"""What a password becomes in a redacted URL."""

_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def redact_url(url: str) -> str:
    """The URL with its password (user-info or `?password=`) replaced by ***: the only form a log may print.

    Works for every URL we log (mqtt://, mqtts://, postgresql://); one without a password comes back unchanged.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{hostport}" if sep else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode([(key, REDACTED if key in _SECRET_QUERY_KEYS else value) for key, value in pairs],
                              safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
