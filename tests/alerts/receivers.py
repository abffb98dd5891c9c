"""Real receivers on loopback for the alert tests: an HTTP webhook server, an SMTP server with
STARTTLS (aiosmtpd), and the rows the tests seed (devices and readings written with SQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devtools.ports import free_port

SECRET = "test-webhook-secret"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # Unix time it arrived

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def signature_ok(self, secret: str = SECRET) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Citysense-Signature", ""), expected)


@dataclass
class WebhookReceiver:
    """Records every POST; answers `fail_first` requests with 500 first (then 204), or always when -1."""

    port: int
    fail_first: int = 0
    received: list[Delivery] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self, rule: str | None = None, transition: str | None = None) -> list[Delivery]:
        with self.lock:
            return [
                d
                for d in self.received
                if (rule is None or d.json["alert"]["rule"] == rule)
                and (transition is None or d.json["transition"] == transition)
            ]


@contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(free_port(), fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                refuse = receiver.fail_first < 0 or receiver.refused < receiver.fail_first
                if refuse:
                    receiver.refused += 1
                else:
                    receiver.received.append(Delivery(dict(self.headers.items()), body))
            self.send_response(500 if refuse else 204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class MailBox:
    """The mails an SMTP server on loopback accepted, and whether each came over TLS."""

    port: int
    ca_file: Path
    mails: list[tuple[bool, Message]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[Message]:
        return [m for _, m in self.mails if m["To"] == address]


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the openssl command (valid one day)."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def smtp_server(folder: Path) -> Iterator[MailBox]:
    """aiosmtpd with STARTTLS required: a client that does not upgrade cannot send."""
    import ssl

    cert, key = self_signed_cert(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = MailBox(free_port(), cert)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            content = envelope.original_content or b""
            box.mails.append((session.ssl is not None, message_from_bytes(content)))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port, tls_context=context, require_starttls=True)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def add_devices(url: str, devices: Iterable[tuple[str, str | None, float | None, float | None]]) -> None:
    """(device_id, school, lat, lon) rows, registered air boxes."""
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, kind, school, lat, lon, registered)"
            " VALUES (%s, 'airbox', %s, %s, %s, true)",
            list(devices),
        )


def add_readings(url: str, rows: Sequence[tuple[datetime, str, str, float, int]]) -> None:
    """(time, device_id, metric, value, flags) rows; raw = value."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [(t, d, m, v, v, f) for t, d, m, v, f in rows],
        )
