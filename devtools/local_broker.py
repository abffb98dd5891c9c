"""Run an MQTT broker owned by this process tree: Mosquitto when installed, else amqtt.

Mosquitto is the broker of record (tests, bench, production); amqtt keeps `make demo`
pip-only on machines without it. Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

from devtools.ports import wait_for_port
from devtools.processes import stop_process
from ingest.broker_files import CLOSED_LISTENER_CONFIG, BrokerFiles


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class LocalMosquitto:
    """A mosquitto with persistence on and QoS 1 limits that suit ack-after-commit."""

    def __init__(self, workdir: Path, port: int, extra_config: str = "") -> None:
        binary = mosquitto_path()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = Path(workdir).absolute()
        self.port = port
        self.extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def closed(cls, workdir: Path, port: int, files: BrokerFiles) -> LocalMosquitto:
        """A broker that admits only the accounts of `files` and names each session after its
        username (the production listener's lines, `CLOSED_LISTENER_CONFIG`)."""
        return cls(workdir, port, extra_config=CLOSED_LISTENER_CONFIG.format(passwords=files.passwords, acl=files.acl))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def url_for(self, username: str, password: str) -> str:
        """The broker URL with one account's credentials (URL-quoted)."""
        return f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        # max_inflight 0 and max_queued 0: the gateway acks a whole batch after commit, so it
        # needs thousands of unacked messages in flight, and a persistent session must not
        # drop what arrives while the gateway is down (bounded by memory, as in production).
        conf.write_text(
            textwrap.dedent(
                f"""\
                listener {self.port} 127.0.0.1
                persistence true
                persistence_location {self.workdir}/
                autosave_interval 1
                max_inflight_messages 0
                max_queued_messages 0
                max_packet_size 2000000
                log_dest file {self.workdir}/mosquitto.log
                log_type error
                log_type warning
                user root
                """
            )
            + (self.extra_config or "allow_anonymous true\n")
        )
        return conf

    def start(self, timeout: float = 10.0) -> None:
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        stop_process(self._proc, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the broker dies at once and keeps only what its last autosave wrote (a crash)."""
        stop_process(self._proc, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its password and ACL files (new devices, new accounts)."""
        assert self._proc is not None, "broker not started"
        self._proc.send_signal(signal.SIGHUP)


class LocalAmqtt:
    """The pure-Python amqtt broker in a child process (demo only; ~3k msg/s)."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = Path(workdir).absolute()
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.workdir / "amqtt.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.amqtt_broker", str(self.port)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self._proc, timeout=timeout)
