"""The test harness itself: server discovery order and fault-injection controls."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from dbroute.testing import (
    DatabasePair,
    PostgresServer,
    ServerPair,
    ServerUnavailableError,
    libpq_url,
    start_server_pair,
)
from dbroute.testing import servers as harness
from dbroute.testing.servers import find_bin_dir


def test_env_urls_come_first(dbroute_servers: ServerPair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBROUTE_TEST_NEON_URL", libpq_url(dbroute_servers.neon.url))
    monkeypatch.setenv("DBROUTE_TEST_RDS_URL", libpq_url(dbroute_servers.rds.url))
    with start_server_pair() as pair:
        assert pair.source == "env"
        assert pair.neon.url == dbroute_servers.neon.url  # normalised to the psycopg driver
        assert pair.rds.url == dbroute_servers.rds.url
        assert not pair.neon.controllable
        with pytest.raises(ServerUnavailableError, match="only servers started from local"):
            pair.neon.stop()
    # Servers given by the environment are not stopped by the harness.
    with psycopg.connect(libpq_url(dbroute_servers.neon.url)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_half_configured_env_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBROUTE_TEST_NEON_URL", "postgresql://localhost/x")
    monkeypatch.delenv("DBROUTE_TEST_RDS_URL", raising=False)
    with pytest.raises(ServerUnavailableError, match="set both"), start_server_pair():
        pass


def test_two_distinct_servers(dbroute_servers: ServerPair) -> None:
    ports = set()
    for server in (dbroute_servers.neon, dbroute_servers.rds):
        with psycopg.connect(libpq_url(server.url)) as conn:
            ports.add(conn.execute("show port").fetchone())
    assert len(ports) == 2


def test_local_server_stops_and_starts_on_the_same_port(dbroute_servers: ServerPair) -> None:
    server = dbroute_servers.rds
    if not server.controllable:
        pytest.skip(f"servers from {server.source} cannot be stopped by the harness")
    server.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(libpq_url(server.url), connect_timeout=2)
    finally:
        server.start()
    with psycopg.connect(libpq_url(server.url)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_finds_local_binaries_when_installed(dbroute_servers: ServerPair) -> None:
    if dbroute_servers.source != "local":
        pytest.skip("servers did not come from local binaries")
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    assert (bin_dir / "initdb").exists()


def test_reprs_mask_passwords() -> None:
    url = "postgresql+psycopg://app:s3cr3t@db.example:5432/app"
    server = PostgresServer("rds", url, "env")
    texts = [repr(server), repr(ServerPair(server, server)), repr(DatabasePair(url, url, "app"))]
    for text in texts:
        assert "s3cr3t" not in text
        assert "app:***@db.example:5432/app" in text


def test_a_server_that_cannot_start_says_why_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("no local PostgreSQL binaries")
    monkeypatch.setitem(harness._FAST_SETTINGS, "shared_buffers", "lots")
    pattern = f"{tempfile.gettempdir()}/dbroute-unstartable-*"
    with (
        pytest.raises(ServerUnavailableError, match="could not start PostgreSQL") as info,
        harness._local_server("unstartable", bin_dir),
    ):
        pass
    assert "shared_buffers" in str(info.value)  # the server log's reason is quoted
    assert glob.glob(pattern) == []


_KILLED_HARNESS = """
import sys
from dbroute.testing import start_server_pair
with start_server_pair(allow_pgserver=False) as pair:
    for server in (pair.neon, pair.rds):
        print(server.url, server._data_dir.parent, flush=True)
    sys.stdin.read()  # until killed
"""


@pytest.mark.skipif(find_bin_dir() is None, reason="needs local PostgreSQL binaries")
def test_a_killed_test_process_leaves_no_server_behind() -> None:
    """SIGKILL runs no cleanup code: the watchdog stops the servers and removes their files."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DBROUTE_TEST")}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_HARNESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None
    servers = [process.stdout.readline().decode().split() for _ in range(2)]
    assert all(_answers(url) and Path(root).is_dir() for url, root in servers)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        _answers(url) or Path(root).exists() for url, root in servers
    ):
        time.sleep(0.2)
    assert not any(_answers(url) for url, _ in servers)
    assert not any(Path(root).exists() for _, root in servers)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=1):
            return True
    except psycopg.OperationalError:
        return False
