"""The delivery worker: drains the outbox by webhook, e-mail and MQTT, retrying with backoff.

Guarantees:
- at least once: a message is marked delivered only after the receiver accepted it (HTTP 2xx,
  SMTP accepted, PUBACK); a worker killed in between sends it again (receivers deduplicate on
  the `X-Citysense-Delivery` header, the outbox id);
- retries: try n waits `alerts_retry_base_s` x 2^(n-1) (at most an hour) after failing; after
  `alerts_delivery_attempts` tries the message is dead-lettered (`dead_at`, `last_error` kept);
- webhooks are HMAC-SHA256 signed: `X-Citysense-Signature: sha256=<hex of HMAC(secret, body)>`;
- e-mail is a digest: all the messages due for one recipient go in one mail, and a recipient
  gets at most one mail every `alerts_email_digest_s` seconds;
- the MQTT flag is published from the school's current row, never from a queued snapshot, so a
  late retry can never put an old colour back on the retained topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from alerts import store
from alerts.store import AnyConn, OutboxRow
from alerts.telemetry import DELIVERY_FAILURES
from contracts.settings import Settings
from contracts.urls import parse_mqtt_url, redact_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Citysense-Signature"
DELIVERY_HEADER = "X-Citysense-Delivery"
LEASE_S = 60.0
BATCH = 100
MAX_BACKOFF_S = 3600.0


class DeliveryError(RuntimeError):
    """A receiver refused or could not be reached; the text says which and why."""


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(url: str, body: bytes, secret: str, delivery_id: int, timeout_s: float = 5.0) -> None:
    """POST one JSON message; DeliveryError unless the receiver answers 2xx."""
    request = urllib.request.Request(  # noqa: S310 - the rules admit only http(s) URLs
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body),
            DELIVERY_HEADER: str(delivery_id),
            "User-Agent": "citysense-alerts",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook {redact_url(url)} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"webhook {redact_url(url)} unreachable: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook {redact_url(url)} answered {status}")


def digest_mail(sender: str, recipient: str, rows: Sequence[OutboxRow]) -> EmailMessage:
    """One mail listing every transition in `rows`, oldest first."""
    mail = EmailMessage()
    opened = sum(1 for r in rows if r.payload.get("transition") == "opened")
    mail["Subject"] = f"citysense alerts: {opened} opened, {len(rows) - opened} resolved"
    mail["From"], mail["To"] = sender, recipient
    lines = []
    for row in rows:
        alert = row.payload.get("alert", {})
        lines.append(
            f"{row.payload.get('transition', '?'):8} {alert.get('rule')} {alert.get('subject')}"
            f" (school {alert.get('school') or '-'}) at {alert.get('ended_at') or alert.get('started_at')}\n"
            f"         evidence: {orjson.dumps(alert.get('evidence', {})).decode()}"
        )
    mail.set_content("\n".join(lines) + "\n")
    return mail


def send_mail(smtp_url: str, ca_file: str | None, mail: EmailMessage, timeout_s: float = 15.0) -> None:
    """Send over SMTP, always upgraded with STARTTLS (a server that does not offer it is refused)."""
    parts = urlsplit(smtp_url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise DeliveryError(
            f"CITYSENSE_ALERTS_SMTP_URL must be smtp://[user:pass@]host:port, got {redact_url(smtp_url)}"
        )
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with smtplib.SMTP(parts.hostname, parts.port or 587, timeout=timeout_s) as client:
            client.ehlo()
            if not client.has_extn("starttls"):
                raise DeliveryError(f"SMTP server {parts.hostname} does not offer STARTTLS; refusing to send in clear")
            client.starttls(context=context)
            client.ehlo()
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(mail)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {parts.hostname}:{parts.port}: {exc}") from None


def flag_payload(row: dict[str, Any]) -> bytes:
    """The retained flag message: exactly school, colour, rgb, aqi, scale, category, at (UTC)."""
    at: datetime = row["updated_at"]
    return orjson.dumps(
        {
            "school": row["school"],
            "colour": row["colour"],
            "rgb": row["rgb"],
            "aqi": row["aqi"],
            "scale": row["scale"],
            "category": row["category"],
            "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
    )


class FlagPublisher:
    """A paho session of its own (client id citysense-alerts-<n>) publishing retained QoS 1 flags.

    On MQTT 5 (CITYSENSE_MQTT_PROTOCOL, the default) the broker's PUBACK carries a reason code, so
    a flag the broker refuses (an account whose ACL does not allow the flag topics) is a delivery
    failure that is retried and dead-lettered, not a silent loss; MQTT 3.1.1 (the amqtt demo
    fallback) has no way to say so."""

    def __init__(self, mqtt_url: str, client_id: str, protocol: str = "5") -> None:
        endpoint = parse_mqtt_url(mqtt_url)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        )
        self._refused: dict[int, str] = {}
        self._client.on_publish = self._on_publish
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            self._client.tls_set()
        self._connected = threading.Event()
        self._client.on_connect = lambda *_args: self._connected.set()
        self._client.on_disconnect = lambda *_args: self._connected.clear()
        self._client.connect_async(endpoint.host, endpoint.port, keepalive=30)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        if not self._connected.wait(timeout_s):
            raise DeliveryError("MQTT broker not connected")
        info = self._client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise DeliveryError(f"broker did not acknowledge {topic}")
        refused = self._refused.pop(info.mid, None)
        if refused is not None:
            raise DeliveryError(f"broker refused {topic}: {refused}")

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode,
                    properties: object) -> None:
        """Runs in paho's thread before `wait_for_publish` returns: note a refusing PUBACK."""
        if reason.is_failure:
            self._refused[mid] = str(reason)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class DeliveryWorker:
    """Sends what the outbox holds; `deliver_once` is one pass over every channel."""

    def __init__(self, settings: Settings, flags: FlagPublisher | None) -> None:
        self.settings = settings
        self.flags = flags

    def _retry_in(self, attempts: int) -> float | None:
        if attempts >= self.settings.alerts_delivery_attempts:
            return None
        return float(min(MAX_BACKOFF_S, self.settings.alerts_retry_base_s * 2.0 ** (attempts - 1)))

    async def _failed(self, conn: AnyConn, channel: str, rows: Sequence[OutboxRow], error: str) -> None:
        DELIVERY_FAILURES.labels(channel).inc()
        retry = self._retry_in(max(r.attempts for r in rows))
        log.warning(
            "event=alert_delivery_failed channel=%s ids=%s attempts=%d %s reason=%r",
            channel,
            [r.id for r in rows],
            max(r.attempts for r in rows),
            "dead_lettered=true" if retry is None else f"retry_in_s={retry:g}",
            error,
        )
        await store.mark_failed(conn, [r.id for r in rows], error, retry)

    async def deliver_once(self, conn: AnyConn) -> int:
        """Send every due message once; returns how many were delivered."""
        return await self._webhooks(conn) + await self._emails(conn) + await self._flags(conn)

    async def _webhooks(self, conn: AnyConn) -> int:
        """POST the due webhooks at once (threads, at most BATCH), then record each outcome: a receiver
        that hangs costs its timeout once per pass, not once per message."""
        rows = await store.claim_due(conn, "webhook", BATCH, LEASE_S)

        async def one(row: OutboxRow) -> str | None:
            body = orjson.dumps(row.payload)
            try:
                await asyncio.to_thread(post_webhook, row.target, body, self.settings.alerts_webhook_secret, row.id)
            except DeliveryError as exc:
                return str(exc)
            return None

        outcomes = await asyncio.gather(*(one(row) for row in rows))
        delivered = [row.id for row, error in zip(rows, outcomes, strict=True) if error is None]
        if delivered:
            await store.mark_delivered(conn, delivered)
        for row, error in zip(rows, outcomes, strict=True):
            if error is not None:
                await self._failed(conn, "webhook", [row], error)
        return len(delivered)

    async def _emails(self, conn: AnyConn) -> int:
        if not self.settings.alerts_smtp_url:
            return 0
        sent = 0
        ca = str(self.settings.alerts_smtp_ca_file) if self.settings.alerts_smtp_ca_file else None
        for target in await store.email_targets_due(conn, self.settings.alerts_email_digest_s):
            rows = await store.claim_due(conn, "email", BATCH, LEASE_S, target=target)
            if not rows:
                continue
            mail = digest_mail(self.settings.alerts_smtp_from, target, rows)
            try:
                await asyncio.to_thread(send_mail, self.settings.alerts_smtp_url, ca, mail)
            except DeliveryError as exc:
                await self._failed(conn, "email", rows, str(exc))
                continue
            await store.mark_delivered(conn, [r.id for r in rows])
            sent += len(rows)
        return sent

    async def _flags(self, conn: AnyConn) -> int:
        if self.flags is None:
            return 0
        rows = await store.claim_due(conn, "mqtt", BATCH * 10, LEASE_S)
        by_topic: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_topic.setdefault(row.target, []).append(row)
        sent = 0
        for topic, group in by_topic.items():
            current = await store.school_flag_row(conn, str(group[-1].payload["school"]))
            try:
                if current is not None:
                    await asyncio.to_thread(self.flags.publish, topic, flag_payload(current))
            except DeliveryError as exc:
                await self._failed(conn, "mqtt", group, str(exc))
                continue
            await store.mark_delivered(conn, [r.id for r in group])
            sent += len(group)
        return sent
