"""A real PostgreSQL + PostGIS + pgstac cluster on 127.0.0.1 for the tests (and the benchmarks):
``initdb`` under a temporary directory, ``pg_ctl start`` on a free port, ``pypgstac migrate``.

The server binaries come from Debian's ``postgresql`` packages (``.ci/run`` installs them with
``postgresql-15-postgis-3``); they are looked for on PATH and under /usr/lib/postgresql. As root
(PostgreSQL refuses to run as root) the cluster runs as the ``postgres`` user. Password
authentication over TCP (scram-sha-256), so the DSN carries a password like a user's does.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PASSWORD = "s3cret-Pa55-for-tests"


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql postgresql-15-postgis-3)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stacgit-pg-"))
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        argv = ["runuser", "-u", "postgres", "--", *cmd] if self.as_root else list(cmd)
        proc = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")

    def start(self) -> "PgServer":
        data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_root:
            shutil.chown(self.dir, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run(_bin("initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "--auth-host=scram-sha-256",
                  "--auth-local=trust", "-E", "UTF8", "--locale=C")
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} -c fsync=off -c synchronous_commit=off"
        self._run(_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        env = {**os.environ, "PGSTAC_DSN": ""}
        migrate = subprocess.run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", self.dsn], capture_output=True, text=True, env=env)
        if migrate.returncode != 0:
            migrate = subprocess.run([str(Path(sys.executable).parent / "pypgstac"), "migrate", "--dsn", self.dsn], capture_output=True, text=True, env=env)
        if migrate.returncode != 0:
            self.stop()
            raise RuntimeError(f"pypgstac migrate: {migrate.stderr.strip()[-2000:]}")
        return self

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
