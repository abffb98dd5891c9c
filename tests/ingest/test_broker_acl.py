"""Per-account credentials, client ids and ACLs, enforced by a real Mosquitto from files we generate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from alerts.delivery import DeliveryError, FlagPublisher
from citysense.cli import app
from contracts.settings import get_settings
from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from ingest.broker_files import (
    CLOSED_LISTENER_CONFIG,
    AccountCollision,
    Operator,
    account_password_env,
    account_passwords,
    mosquitto_hash,
    verify,
    write_broker_files,
)
from ingest.device_store import register_device
from tests.conftest import REPO, StartClosedBroker, wait_until

GATEWAY = "citysense-gateway-1"


class Peer:
    """One paho MQTT 3.1.1 client (as the firmware speaks) that records what it receives and
    whether the broker dropped it; a 3.1.1 publish the ACL denies is dropped silently."""

    def __init__(self, port: int, user: str | None, password: str | None, client_id: str | None = None) -> None:
        self.received: list[str] = []
        self.dropped = threading.Event()
        self.rc: ReasonCode | None = None
        done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}-{time.monotonic_ns()}")
        if user is not None:
            self.client.username_pw_set(user, password)

        def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
            self.rc = rc
            done.set()

        def on_disconnect(client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode,
                          props: object) -> None:
            self.dropped.set()
            done.set()

        self.client.on_connect = on_connect
        self.client.on_disconnect = on_disconnect
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        done.wait(5)

    @property
    def connected(self) -> bool:
        return self.rc is not None and not self.rc.is_failure and not self.dropped.is_set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _register(database_url: str, *devices: tuple[str, str], owner: str = "test") -> None:
    for device_id, token in devices:
        register_device(database_url, device_id=device_id, kind="airbox", sensor_type="pms5003", owner=owner,
                        token=token)


def test_mosquitto_hash_round_trips() -> None:
    stored = mosquitto_hash("tok-123")
    assert stored.startswith("$7$101$") and verify("tok-123", stored) and not verify("tok-124", stored)


def test_device_may_publish_only_under_its_own_id(database_url: str, closed_mosquitto: StartClosedBroker) -> None:
    _register(database_url, ("acl-box-a", "token-a"), ("acl-box-b", "token-b"))
    broker = closed_mosquitto(database_url, {GATEWAY: "gw-pass"}, ())
    gw = Peer(broker.port, GATEWAY, "gw-pass")
    assert gw.connected
    gw.client.subscribe("citysense/v1/#", qos=1)
    time.sleep(0.5)
    dev_a = Peer(broker.port, "acl-box-a", "token-a")
    assert dev_a.connected
    dev_a.client.publish("citysense/v1/airbox/acl-box-a/up", b"own", qos=1).wait_for_publish(5)
    # each denied publish from its own connection: Mosquitto may close a client after a denied publish
    for topic in ("citysense/v1/airbox/acl-box-b/up", f"citysense/v1/airbox/{GATEWAY}/up"):
        spoofer = Peer(broker.port, "acl-box-a", "token-a")
        spoofer.client.publish(topic, b"spoof", qos=1)
        time.sleep(0.3)
        spoofer.close()
    time.sleep(1.0)
    assert gw.received == ["citysense/v1/airbox/acl-box-a/up"]
    intruder = Peer(broker.port, "acl-box-a", "wrong-token")
    assert not intruder.connected
    for peer in (gw, dev_a, intruder):
        peer.close()


def test_device_reads_only_its_own_receipt_and_config(database_url: str, closed_mosquitto: StartClosedBroker) -> None:
    """The gateway account may write every receipt and config; a device subscribed to all of
    them (and to `#`) gets its own only."""
    _register(database_url, ("rc-box-a", "token-a"), ("rc-box-b", "token-b"))
    broker = closed_mosquitto(database_url, {GATEWAY: "gw-pass"}, ())
    dev_a = Peer(broker.port, "rc-box-a", "token-a")
    for topic in ("#", "citysense/v1/airbox/+/receipt", "citysense/v1/airbox/rc-box-b/config",
                  "citysense/v1/airbox/rc-box-b/receipt", "citysense/v1/airbox/rc-box-a/receipt",
                  "citysense/v1/airbox/rc-box-a/config"):
        dev_a.client.subscribe(topic, qos=1)
    time.sleep(0.5)
    gw = Peer(broker.port, GATEWAY, "gw-pass")
    for device in ("rc-box-a", "rc-box-b"):
        for leaf in ("receipt", "config"):
            gw.client.publish(f"citysense/v1/airbox/{device}/{leaf}", b"{}", qos=1).wait_for_publish(5)
    wait_until(lambda: len(set(dev_a.received)) >= 2, 5, what="the device's own receipt and config")
    time.sleep(0.5)
    assert set(dev_a.received) == {"citysense/v1/airbox/rc-box-a/receipt", "citysense/v1/airbox/rc-box-a/config"}
    dev_a.close()
    gw.close()


def test_a_client_id_is_its_username_and_anonymous_clients_are_refused(
    database_url: str, closed_mosquitto: StartClosedBroker
) -> None:
    """A device that sends the gateway's client id gets a session named after itself: the
    gateway stays connected. A client without a username is not admitted at all."""
    _register(database_url, ("cid-box", "token"))
    broker = closed_mosquitto(database_url, {GATEWAY: "gw-pass"}, ())
    gw = Peer(broker.port, GATEWAY, "gw-pass", client_id=GATEWAY)
    assert gw.connected
    impostor = Peer(broker.port, "cid-box", "token", client_id=GATEWAY)
    assert impostor.connected, "the broker refused the device: the takeover test would prove nothing"
    time.sleep(1.0)
    assert gw.connected, "a device with the gateway's client id evicted the gateway"
    anonymous = Peer(broker.port, None, None, client_id="anyone")
    assert not anonymous.connected
    for peer in (gw, impostor, anonymous):
        peer.close()


def test_operator_publishes_only_for_its_owners_devices(database_url: str, closed_mosquitto: StartClosedBroker) -> None:
    _register(database_url, ("sim-box-1", "t1"), ("sim-box-2", "t2"), owner="demo")
    _register(database_url, ("city-box-1", "t3"), owner="city")
    broker = closed_mosquitto(database_url, {GATEWAY: "gw-pass"}, [Operator("citysense-sim", "sim-pass", "demo")])
    gw = Peer(broker.port, GATEWAY, "gw-pass")
    gw.client.subscribe("citysense/v1/#", qos=1)
    time.sleep(0.5)
    sim = Peer(broker.port, "citysense-sim", "sim-pass")
    assert sim.connected
    for device in ("sim-box-1", "sim-box-2", "city-box-1", "sim-box-3"):  # no wait: see the test above
        sim.client.publish(f"citysense/v1/airbox/{device}/up", b"{}", qos=1)
        time.sleep(0.2)
    time.sleep(1.0)
    assert gw.received == ["citysense/v1/airbox/sim-box-1/up", "citysense/v1/airbox/sim-box-2/up"]
    sim.close()
    gw.close()


def test_no_device_may_forge_a_receipt_for_another_device_or_itself(
    database_url: str, closed_mosquitto: StartClosedBroker
) -> None:
    _register(database_url, ("fg-box-a", "token-a"), ("fg-box-b", "token-b"))
    broker = closed_mosquitto(database_url, {GATEWAY: "gw-pass"}, ())
    receipt_a, receipt_b = "citysense/v1/airbox/fg-box-a/receipt", "citysense/v1/airbox/fg-box-b/receipt"
    watcher = Peer(broker.port, GATEWAY, "gw-pass")  # the gateway account may read every receipt
    watcher.client.subscribe("citysense/v1/+/+/receipt", qos=1)
    time.sleep(0.5)
    # one connection per denied attempt, at QoS 0: Mosquitto 2.0.11 may drop a client after a denied
    # publish, and answers a denied QoS 1 publish with an MQTT 5 reason code in a 3.1.1 PUBACK
    for user, password, topic in (("fg-box-b", "token-b", receipt_a), ("fg-box-b", "token-b", receipt_b),
                                  ("fg-box-a", "token-a", receipt_a)):
        forger = Peer(broker.port, user, password)
        assert forger.connected
        forger.client.publish(topic, b'{"seq":999}', qos=0)
        time.sleep(0.3)
        forger.close()
    # (one connection per account: a second one would take the first's session)
    watcher.client.publish(receipt_a, b'{"seq":7}', qos=1).wait_for_publish(5)
    wait_until(lambda: receipt_a in watcher.received, 5, what="the gateway's receipt")
    time.sleep(0.5)
    assert watcher.received == [receipt_a]  # the gateway's one; no forged receipt got through
    watcher.close()


@pytest.mark.parametrize("bad", ["Upper", "a", "x" * 65, "has space"])
def test_registration_refuses_bad_ids(database_url: str, bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        register_device(database_url, device_id=bad, kind="airbox", name=None, school=None, lat=None, lon=None,
                        sensor_type=None, owner=None, token="t")


@pytest.mark.parametrize("reserved", [GATEWAY, "citysense-sim", "citysense-anything"])
def test_registration_refuses_ids_in_the_account_namespace(database_url: str, reserved: str) -> None:
    with pytest.raises(ValueError, match="reserved for gateway and operator broker accounts"):
        register_device(database_url, device_id=reserved, kind="airbox", token="t")


def test_broker_files_refuse_a_device_that_collides_with_an_account(database_url: str, tmp_path: Path) -> None:
    """A row written before the rule (or by hand) named like the gateway: nothing is written."""
    _register(database_url, ("fine-box", "token"))
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO devices (device_id, kind, registered, token_hash) VALUES (%s, 'airbox', true, %s)",
                     (GATEWAY, mosquitto_hash("device-token")))
    with pytest.raises(AccountCollision, match=GATEWAY):
        write_broker_files(database_url, tmp_path / "auth", {GATEWAY: "gw-pass"})
    assert not (tmp_path / "auth" / "passwords").exists()


@pytest.mark.parametrize("account", ["gateway-1", "citysense-Gateway", "citysense-gw 1"])
def test_broker_accounts_outside_the_reserved_namespace_are_refused(
    database_url: str, tmp_path: Path, account: str
) -> None:
    with pytest.raises(ValueError, match="must match"):
        write_broker_files(database_url, tmp_path / "auth", {account: "pw"})


def test_two_gateway_accounts_are_written_with_their_own_passwords(database_url: str, tmp_path: Path) -> None:
    files = write_broker_files(database_url, tmp_path / "auth", {GATEWAY: "pw-1", "citysense-gateway-2": "pw-2"})
    stored = dict(line.split(":", 1) for line in files.passwords.read_text().splitlines())
    assert verify("pw-1", stored[GATEWAY]) and verify("pw-2", stored["citysense-gateway-2"])
    acl = files.acl.read_text().splitlines()
    assert f"user {GATEWAY}" in acl and "user citysense-gateway-2" in acl
    assert files.passwords.stat().st_mode & 0o777 == 0o600


def test_account_passwords_come_from_the_file_then_the_environment(tmp_path: Path) -> None:
    given = tmp_path / "accounts"
    given.write_text("# gateway replicas\ncitysense-gateway-1:from:file\n")
    env = {account_password_env("citysense-gateway-2"): "from-env"}
    assert account_password_env("citysense-gateway-2") == "CITYSENSE_GATEWAY_2_MQTT_PASSWORD"
    found = account_passwords(["citysense-gateway-1", "citysense-gateway-2"], given, env)
    assert found == {"citysense-gateway-1": "from:file", "citysense-gateway-2": "from-env"}
    with pytest.raises(ValueError, match="CITYSENSE_SIM_MQTT_PASSWORD"):
        account_passwords(["citysense-sim"], given, env)


def test_the_deployed_broker_runs_the_closed_listener() -> None:
    """deploy/mosquitto/mosquitto.conf carries every line of the closed listener, after its
    `listener` line (use_username_as_clientid is a per-listener option)."""
    lines = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    expected = CLOSED_LISTENER_CONFIG.format(passwords="/mosquitto/config/passwords",
                                             acl="/mosquitto/config/acl").splitlines()
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    for line in expected:
        assert line in lines[listener:], line


def test_broker_files_command_writes_every_gateway_and_operator(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`citysense device broker-files` with two replicas and the simulator, passwords from the
    environment; an account without a password is a one-line error, and nothing is written."""
    _register(database_url, ("cli-box", "token"), owner="demo")
    monkeypatch.setenv("CITYSENSE_DATABASE_URL", database_url)
    monkeypatch.setenv("CITYSENSE_GATEWAY_1_MQTT_PASSWORD", "pw-1")
    monkeypatch.setenv("CITYSENSE_GATEWAY_2_MQTT_PASSWORD", "pw-2")
    get_settings.cache_clear()
    try:
        args = ["device", "broker-files", "--out", str(tmp_path / "auth"), "--gateway", "citysense-gateway-1",
                "--gateway", "citysense-gateway-2"]
        refused = CliRunner().invoke(app, [*args, "--operator", "citysense-sim=demo"])
        assert refused.exit_code != 0 and "CITYSENSE_SIM_MQTT_PASSWORD" in refused.output
        assert not (tmp_path / "auth").exists()
        monkeypatch.setenv("CITYSENSE_SIM_MQTT_PASSWORD", "pw-sim")
        done = CliRunner().invoke(app, [*args, "--operator", "citysense-sim=demo"])
        assert done.exit_code == 0, done.output
    finally:
        get_settings.cache_clear()
    stored = dict(line.split(":", 1) for line in (tmp_path / "auth" / "passwords").read_text().splitlines())
    assert verify("pw-2", stored["citysense-gateway-2"]) and verify("pw-sim", stored["citysense-sim"])
    assert "topic write citysense/v1/airbox/cli-box/up" in (tmp_path / "auth" / "acl").read_text().splitlines()


def test_alerts_account_writes_the_school_flags_that_every_account_may_read(
    database_url: str, tmp_path: Path
) -> None:
    """The alert evaluator's own publisher (alerts.delivery.FlagPublisher) on its alerts account
    sets a retained flag that a flag light's display account and any device read; a device cannot
    set a flag, and the alerts account cannot publish readings."""
    _register(database_url, ("flag-box-a", "token-a"))
    files = write_broker_files(database_url, tmp_path / "auth", {GATEWAY: "gw-pass"},
                               alerts={"citysense-alerts": "al-pass"}, displays={"citysense-flag-es-1": "fl-pass"})
    broker = LocalMosquitto.closed(tmp_path / "mosquitto", free_port(), files)
    broker.start()
    try:
        flags = FlagPublisher(broker.url_for("citysense-alerts", "al-pass"), "citysense-alerts")
        flags.publish("citysense/v1/school/es-1/flag", b'{"school": "es-1", "rgb": "#ff7e00"}')
        forger = Peer(broker.port, "flag-box-a", "token-a")
        forger.client.publish("citysense/v1/school/es-2/flag", b"{}", qos=1, retain=True)
        time.sleep(0.3)
        forger.close()
        gw = Peer(broker.port, GATEWAY, "gw-pass")
        gw.client.subscribe("citysense/v1/airbox/+/up", qos=1)
        time.sleep(0.5)
        with pytest.raises(DeliveryError, match="refused"):  # MQTT 5: the broker says no, not a silent loss
            flags.publish("citysense/v1/airbox/flag-box-a/up", b"{}")
        box_up = Peer(broker.port, "flag-box-a", "token-a")
        box_up.client.publish("citysense/v1/airbox/flag-box-a/up", b"{}", qos=1).wait_for_publish(5)
        wait_until(lambda: gw.received, 5, what="the box's own reading")  # the gateway does listen
        box_up.close()
        light = Peer(broker.port, "citysense-flag-es-1", "fl-pass")
        box = Peer(broker.port, "flag-box-a", "token-a")
        for peer in (light, box):
            assert peer.connected
            peer.client.subscribe("citysense/v1/school/+/flag", qos=1)  # retained copies arrive on subscribe
        wait_until(lambda: light.received and box.received, 5, what="the retained flag")
        time.sleep(0.5)
        assert light.received == box.received == ["citysense/v1/school/es-1/flag"]
        assert gw.received == ["citysense/v1/airbox/flag-box-a/up"]  # the box's, not the alerts account's
        for peer in (gw, light, box):
            peer.close()
        flags.close()
    finally:
        broker.stop()
