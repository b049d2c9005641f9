from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch

# Test modules that start processes or servers, run studies, train on real data or build the site:
# `make test` runs them; `make check` (the fast tier for the edit-test loop) leaves them out.
INTEGRATION = (
    "benchmarks/",
    "reliability/",
    "report/",
    "study/test_cli_study.py",
    "study/test_reproducible.py",
    "study/test_study.py",
    "study/test_supernet.py",
    "study/test_validate.py",
    "train/test_cli_train.py",
    "train/test_train.py",
    "compact/test_prune.py",
    "compact/test_export.py",
    "models/test_user.py",
    "test_cli.py",
    "test_doc_commands.py",
    "test_docs.py",
    "test_site.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    root = Path(__file__).parent
    for item in items:
        where = Path(item.fspath).relative_to(root).as_posix()
        if where.startswith(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a Python module (a data plug-in) importable by name for this test; forgotten afterwards."""
    import sys
    import textwrap

    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


# -- a real PostgreSQL server for the distributed-study and reliability tests, started once per session.
# The server's binaries come from the system (Debian's ``postgresql`` package; ``.ci/run`` installs it).
# Where they are missing, the tests that need the server are skipped, saying so.


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A real PostgreSQL server in a temporary directory, which a test may stop and start again (same data,
    same port). Run as the postgres user where the tests run as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if initdb is None or self.pg_ctl is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; apt-get install postgresql")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.skip("the psycopg driver is not installed (pip install 'sparsearch[postgres]')")
        self.root = Path(tempfile.mkdtemp(prefix="sparsearch-pg-"))
        self.data = self.root / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o700)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        subprocess.run(
            [*self.prefix, initdb, "-D", str(self.data), "--auth=trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` is a crash (no checkpoint; recovery at the next start)."""
        subprocess.run([*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"], capture_output=True)

    def remove(self) -> None:
        self.stop()
        time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def postgres_server():
    """A server of the test's own, to stop and start again."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_database(postgres_url):
    """A fresh database on the session's server for one test."""
    import psycopg

    name = f"t{os.getpid()}_{int(time.time() * 1e6)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name
