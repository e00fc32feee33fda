"""Real PostgreSQL servers for tests and the demo: one plays Neon, one plays RDS.

Servers are found in this order, the first that answers wins:

1. ``DBROUTE_TEST_NEON_URL`` and ``DBROUTE_TEST_RDS_URL`` from the environment;
2. testcontainers, when a Docker engine answers;
3. local PostgreSQL binaries (``initdb``/``pg_ctl`` on ``PATH``, in
   ``pg_config --bindir`` or under ``/usr/lib/postgresql/*/bin``), run as the
   ``postgres`` system user when the current user is root (initdb refuses root);
4. the optional ``pgserver`` package (PostgreSQL binaries in a wheel).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dbroute.errors import DBRouteError

# The public names are re-exported (and listed) by dbroute.testing.

log = logging.getLogger("dbroute.testing")

Source = Literal["env", "testcontainers", "local", "pgserver"]

NEON_ENV = "DBROUTE_TEST_NEON_URL"
RDS_ENV = "DBROUTE_TEST_RDS_URL"

# Test clusters trade durability for speed; crash tests kill clients, never the
# server's power, so fsync buys nothing here.
_FAST_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
}


class ServerUnavailableError(DBRouteError):
    """No PostgreSQL server could be found or started for tests or the demo."""


@dataclass
class PostgresServer:
    """One running PostgreSQL server.

    ``url`` is a SQLAlchemy URL (``postgresql+psycopg://``) of its ``postgres``
    database. Servers started from local binaries can be stopped and started
    again on the same port, which fault-injection tests use.
    """

    name: str
    url: str
    source: Source
    _data_dir: Path | None = None
    _bin_dir: Path | None = None
    _port: int | None = None
    _socket_dir: Path | None = None
    _handle: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"PostgresServer({self.name!r}, {_masked(self.url)!r}, source={self.source!r})"

    @property
    def controllable(self) -> bool:
        """Whether :meth:`stop` and :meth:`start` work (local binaries only)."""
        return self._data_dir is not None

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        from sqlalchemy.engine import make_url

        # pgserver URLs carry the socket directory in the query: edit, don't slice.
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def stop(self, mode: Literal["fast", "immediate"] = "immediate") -> None:
        """Stop the server (fault injection); :meth:`start` brings it back."""
        bin_dir, data_dir = self._require_control()
        _run_pg(bin_dir, ["pg_ctl", "-D", str(data_dir), "-m", mode, "-w", "stop"])

    def start(self) -> None:
        """Start a stopped server again, on the same port."""
        bin_dir, data_dir = self._require_control()
        assert self._port is not None
        assert self._socket_dir is not None
        _pg_ctl_start(bin_dir, data_dir, self._port, self._socket_dir)

    def _require_control(self) -> tuple[Path, Path]:
        if self._bin_dir is None or self._data_dir is None:
            raise ServerUnavailableError(
                f"the {self.name} server came from {self.source}; only servers started "
                "from local PostgreSQL binaries can be stopped and started"
            )
        return self._bin_dir, self._data_dir


@dataclass(frozen=True)
class ServerPair:
    """The two servers of a test session: ``neon`` and ``rds``."""

    neon: PostgresServer
    rds: PostgresServer

    @property
    def source(self) -> Source:
        """Where the servers came from."""
        return self.neon.source


@dataclass(frozen=True)
class DatabasePair:
    """One freshly created database on each server (isolation for one test)."""

    neon_url: str
    rds_url: str
    name: str

    def __repr__(self) -> str:
        return (
            f"DatabasePair({_masked(self.neon_url)!r}, {_masked(self.rds_url)!r}, "
            f"name={self.name!r})"
        )


@contextlib.contextmanager
def start_server_pair(*, allow_pgserver: bool = True) -> Iterator[ServerPair]:
    """Find or start the two servers; stop what was started on exit."""
    with contextlib.ExitStack() as stack:
        pair = _from_env() or _from_testcontainers(stack) or _from_local_binaries(stack)
        if pair is None and allow_pgserver:
            pair = _from_pgserver(stack)
        if pair is None:
            raise ServerUnavailableError(
                "no PostgreSQL server found: set DBROUTE_TEST_NEON_URL and "
                "DBROUTE_TEST_RDS_URL, start Docker for testcontainers, install "
                "PostgreSQL server binaries (Debian: apt-get install postgresql), or "
                "pip install 'dbroute[demo]' for the embedded pgserver"
            )
        log.info("PostgreSQL servers from %s", pair.source)
        yield pair


def create_database_pair(pair: ServerPair, prefix: str = "t", options: str = "") -> DatabasePair:
    """Create one empty database with the same fresh name on both servers.

    ``options`` go after ``CREATE DATABASE name``, e.g. RDS's default
    collation: ``TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'``.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    databases = DatabasePair(pair.neon.url_for(name), pair.rds.url_for(name), name)
    try:
        for server in (pair.neon, pair.rds):
            _admin(server.url, f'CREATE DATABASE "{name}" {options}')
    except BaseException:
        drop_database_pair(pair, databases)  # the one already created must not linger
        raise
    return databases


def drop_database_pair(pair: ServerPair, databases: DatabasePair) -> None:
    """Drop both databases, disconnecting whoever is still connected."""
    for server in (pair.neon, pair.rds):
        try:
            _admin(server.url, f'DROP DATABASE IF EXISTS "{databases.name}" WITH (FORCE)')
        except Exception as exc:  # a stopped server keeps its test db; harmless, but said
            log.warning("could not drop %s on the %s server: %s", databases.name, server.name, exc)


def libpq_url(url: str) -> str:
    """``url`` (a SQLAlchemy ``postgresql+psycopg://`` URL) as libpq and psycopg take it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _masked(url: str) -> str:
    from dbroute.settings import safe_url  # lazy: the plugin loads this module at pytest start

    try:
        return safe_url(url)
    except Exception:  # a repr must not fail, nor quote what may hold a password
        return "<unparseable URL>"


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.encode())


# --- sources -----------------------------------------------------------------


def _from_env() -> ServerPair | None:
    neon, rds = os.environ.get(NEON_ENV), os.environ.get(RDS_ENV)
    if not neon and not rds:
        return None
    if not (neon and rds):
        raise ServerUnavailableError(f"set both {NEON_ENV} and {RDS_ENV}, or neither")
    return ServerPair(
        PostgresServer("neon", _sqlalchemy_url(neon), "env"),
        PostgresServer("rds", _sqlalchemy_url(rds), "env"),
    )


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no client library, no socket, no engine: all mean "no Docker"
        return False


def _from_testcontainers(stack: contextlib.ExitStack) -> ServerPair | None:
    try:  # testcontainers >= 4.10 moved the module; older releases have only the old path
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        try:
            from testcontainers.postgres import PostgresContainer
        except ImportError:
            return None
    if not _docker_answers():
        return None
    servers = []
    for name in ("neon", "rds"):
        container = PostgresContainer("postgres:15-alpine", driver="psycopg")
        stack.enter_context(container)
        servers.append(PostgresServer(name, container.get_connection_url(), "testcontainers"))
    return ServerPair(servers[0], servers[1])


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or ``None``."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _from_local_binaries(stack: contextlib.ExitStack) -> ServerPair | None:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    servers = [stack.enter_context(_local_server(name, bin_dir)) for name in ("neon", "rds")]
    return ServerPair(servers[0], servers[1])


@contextlib.contextmanager
def _local_server(name: str, bin_dir: Path) -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix=f"dbroute-{name}-"))
    watchdog = _watchdog(bin_dir, root)
    try:
        with _started_local_server(name, bin_dir, root) as server:
            yield server
    finally:
        watchdog.kill()  # a normal exit: the server is stopped below, by us
        watchdog.wait()
        shutil.rmtree(root, ignore_errors=True)


# Runs beside the tests; its stdin is a pipe from them. When it closes without a
# normal exit (SIGTERM, SIGKILL, a crash: no ``finally`` runs), it stops the
# server and removes its directory, so no postgres is left behind.
_WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.buffer.read()
subprocess.run(sys.argv[2:], capture_output=True, check=False)
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def _watchdog(bin_dir: Path, root: Path) -> subprocess.Popen[bytes]:
    stop = [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        stop = _as_postgres_user(stop)
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(root), *stop],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C meant for the tests must not kill it first
    )


@contextlib.contextmanager
def _started_local_server(name: str, bin_dir: Path, root: Path) -> Iterator[PostgresServer]:
    data_dir, socket_dir = root / "data", root / "sock"
    socket_dir.mkdir()
    _chown_to_postgres(root)
    _run_pg(
        bin_dir,
        [
            "initdb",
            "-D",
            str(data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    )
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.writelines(f"{key} = '{value}'\n" for key, value in _FAST_SETTINGS.items())
        # `dbroute assess` reports top statements when the contrib module is there.
        if (bin_dir.parent / "lib" / "pg_stat_statements.so").exists():
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
    port = _pg_ctl_start_on_free_port(bin_dir, data_dir, socket_dir)
    server = PostgresServer(
        name,
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
        "local",
        _data_dir=data_dir,
        _bin_dir=bin_dir,
        _port=port,
        _socket_dir=socket_dir,
    )
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()


def _pg_ctl_start_on_free_port(bin_dir: Path, data_dir: Path, socket_dir: Path) -> int:
    last: Exception | None = None
    for _ in range(5):  # another process may take the port between probe and bind
        port = _free_port()
        try:
            _pg_ctl_start(bin_dir, data_dir, port, socket_dir)
            return port
        except ServerUnavailableError as exc:
            last = exc
    # The directory goes when this fails: quote the end of the server's log now.
    log_file = _log_file(data_dir)
    tail = log_file.read_text(errors="replace").splitlines()[-10:] if log_file.exists() else []
    raise ServerUnavailableError(
        "\n".join([f"could not start PostgreSQL in {data_dir}: {last}", *tail])
    )


def _pg_ctl_start(bin_dir: Path, data_dir: Path, port: int, socket_dir: Path) -> None:
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"
    _run_pg(
        bin_dir,
        [
            "pg_ctl",
            "-D",
            str(data_dir),
            "-o",
            options,
            "-l",
            str(_log_file(data_dir)),
            "-w",
            "-t",
            "60",
            "start",
        ],
    )


def _log_file(data_dir: Path) -> Path:
    return data_dir.parent / "server.log"


def _run_pg(bin_dir: Path, argv: list[str]) -> None:
    command = [str(bin_dir / argv[0]), *argv[1:]]
    if os.geteuid() == 0:
        command = _as_postgres_user(command)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise ServerUnavailableError(f"{argv[0]} failed ({result.returncode}): {output}")


def _as_postgres_user(command: list[str]) -> list[str]:
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *command]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerUnavailableError(
            "running as root, initdb needs the 'postgres' system user: "
            "useradd --system postgres (Debian's postgresql package creates it)"
        ) from exc
    for directory, _, files in os.walk(path):
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), entry.pw_uid, entry.pw_gid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _from_pgserver(stack: contextlib.ExitStack) -> ServerPair | None:
    try:
        import pgserver
    except ImportError:
        return None
    servers = []
    for name in ("neon", "rds"):
        root = Path(tempfile.mkdtemp(prefix=f"dbroute-pgserver-{name}-"))
        stack.callback(shutil.rmtree, root, True)
        # pgserver re-exports get_server without listing it in __all__.
        handle = pgserver.get_server(root, cleanup_mode="stop")  # type: ignore[attr-defined]
        stack.callback(handle.cleanup)
        servers.append(
            PostgresServer(name, _sqlalchemy_url(handle.get_uri()), "pgserver", _handle=handle)
        )
    return ServerPair(servers[0], servers[1])
