"""`python -m ludus_dev run|test|env|stop|systemd|chaos`: what `make run` and `make test` execute."""

from __future__ import annotations

import argparse
import hmac
import os
import shlex
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from ludus_dev import chaos, supervision
from ludus_dev.readiness import wait_battle_ready
from ludus_dev.services import Services, embedded_redis_url, ensure_services, stop_embedded

ROOT = Path(__file__).resolve().parent.parent


def _base_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LUDUS_DATA_DIR", str(data_dir))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The Procfile names programs (uvicorn, celery, python): take them from this virtualenv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dev_secret_key(data_dir: Path) -> str:
    """`make run`'s signing key: random, made on first run and kept in the data folder (mode 0600)
    beside the sessions it signs, so they survive a restart and no key is ever written in the
    code. `make env` exports the same key, so `manage.py` by hand signs as the server does."""
    from django.core.management.utils import get_random_secret_key

    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(get_random_secret_key() + "\n")
        try:
            os.link(draft, path)  # only the first of two commands started at once makes the key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def _run_env(data_dir: Path, svc: Services) -> dict[str, str]:
    """`make run`'s environment, which `make env` exports: DJANGO_SECRET_KEY as set, else the data
    folder's key."""
    env = _base_env(data_dir) | svc.env()
    env.setdefault("DJANGO_SECRET_KEY", dev_secret_key(data_dir))
    # /healthz shows its details (which the ready line reads) only to staff and this token.
    key = env["DJANGO_SECRET_KEY"].encode()
    env.setdefault("LUDUS_METRICS_TOKEN", hmac.new(key, b"metrics", "sha256").hexdigest())
    return env


def gen_processes() -> int:
    """How many `gen` processes make run starts (GEN_PROCESSES): on 2 cores, two processes of
    GEN_CONCURRENCY threads each served 256 streams with half the added first-token latency of one
    (bench/serving.py); three did worse."""
    return max(1, int(os.environ.get("GEN_PROCESSES", "2")))


def _announce_ready(url: str, since: datetime, token: str, timeout_s: float = 180.0) -> None:
    if wait_battle_ready(url, since=since, timeout_s=timeout_s, token=token):
        print(f"\n  Ludus is ready at {url}\n", flush=True)
    else:
        print(
            f"\n  Ludus is up at {url}, but fewer than two models answer yet: see {url}/healthz\n",
            flush=True,
        )


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = Path(os.environ.get("LUDUS_DATA_DIR", ROOT / "data"))
    svc = ensure_services(data_dir)
    env = _run_env(data_dir, svc)
    # make run serves plain HTTP on loopback: debug-friendly defaults unless the operator set them.
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("LUDUS_SECURE_COOKIES", "0")
    env.setdefault("PORT", str(args.port))
    env.setdefault("HOST", args.host)
    try:
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "collectstatic", "--noinput", "-v", "0")  # hashed, compressed: config.asgi
        _manage(env, "build_demo_models", "--if-missing")
        _manage(env, "ensure_admin")
        url = f"http://{env['HOST']}:{env['PORT']}"
        print(f"\n  Ludus is starting at {url} (models load for a few seconds)\n", flush=True)
        since = datetime.now(UTC)  # endpoint health from before this start does not count
        threading.Thread(
            target=_announce_ready, args=(url, since, env["LUDUS_METRICS_TOKEN"]), daemon=True
        ).start()
        # supervisord runs the Procfile's processes and starts again any that exits.
        proc = supervision.start(
            data_dir / "supervisor", env=env, formation={"gen": gen_processes()}
        )
        return supervision.wait(proc)
    finally:
        svc.stop()


def _ensure_chromium() -> None:
    if Path("/usr/bin/chromium").exists():
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("installing Debian's chromium for the browser tests...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], check=False, stdout=subprocess.DEVNULL
        )
        if not Path("/usr/bin/chromium").exists():
            subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "chromium"],
                check=True,
                stdout=subprocess.DEVNULL,
            )


# The tests' Redis database on the embedded server: a `make run` beside them uses database 0, and
# its workers would take the tests' Celery tasks. Parallel test processes use 1-14 (settings).
TEST_REDIS_DB = 15


def redis_url_for_tests(url: str) -> str:
    return urlparse(url)._replace(path=f"/{TEST_REDIS_DB}").geturl()


def cmd_test(args: argparse.Namespace) -> int:
    data_dir = Path(os.environ.get("LUDUS_DATA_DIR", ROOT / "data"))
    _ensure_chromium()
    svc = ensure_services(data_dir)
    env = _base_env(data_dir) | svc.env()
    if env["REDIS_URL"] == embedded_redis_url():  # `make run`'s (also as `make env` exports it)
        env["REDIS_URL"] = redis_url_for_tests(env["REDIS_URL"])
    env.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")
    env.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    bin_dir = Path(sys.executable).parent
    steps: list[list[str]] = []
    if not args.pytest_only:
        steps += [
            [str(bin_dir / "ruff"), "check", "."],
            [str(bin_dir / "ruff"), "format", "--check", "."],
            [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
            [str(bin_dir / "mypy"), "."],
            [sys.executable, "scripts/dependency_audit.py"],  # known vulnerabilities (README)
        ]
    # Pages name content-hashed static files from collectstatic's manifest.
    steps.append([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"])
    steps.append([sys.executable, "-m", "pytest", *args.pytest_args])
    try:
        for step in steps:
            print(
                "$",
                " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)),
                flush=True,
            )
            rc = subprocess.run(step, cwd=ROOT, env=env).returncode
            if rc != 0:
                print(f"FAILED: {' '.join(step)} (exit {rc})", flush=True)
                return rc
        return 0
    finally:
        svc.stop()


ENV_EXPORTS = (
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_SECRET_KEY",
    "LUDUS_METRICS_TOKEN",
    "LUDUS_DATA_DIR",
    "OMP_NUM_THREADS",
    "HF_HUB_OFFLINE",
)


def cmd_env(args: argparse.Namespace) -> int:
    """Start the embedded services (if needed) and print shell exports that point `manage.py`,
    `pytest` or a shell at what `make run` uses: its services, data folder and signing key."""
    data_dir = Path(os.environ.get("LUDUS_DATA_DIR", ROOT / "data"))
    svc = ensure_services(data_dir)
    env = _run_env(data_dir, svc)
    for key in ENV_EXPORTS:
        print(f"export {key}={shlex.quote(env[key])}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(os.environ.get("LUDUS_DATA_DIR", ROOT / "data"))
    # supervisord first: its processes use the services.
    stopped = ["supervisord"] if supervision.stop(data_dir / "supervisor") else []
    stopped += stop_embedded(data_dir)
    names = (
        ", ".join(stopped[:-1]) + " and " + stopped[-1] if len(stopped) > 1 else "".join(stopped)
    )
    print(f"stopped {names}" if stopped else f"nothing was running from {data_dir}")
    return 0


def cmd_systemd(args: argparse.Namespace) -> int:
    """Write systemd units for the Procfile's process types (deploy/ holds those for the defaults)."""
    from ludus_dev.systemd import write_units

    paths = {"root": args.root, "user": args.user, "env_file": args.env_file}
    for path in write_units(Path(args.out), formation={"gen": args.gen}, **paths):
        print(path)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="ludus_dev")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start services, migrate, build the demo zoo, serve")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.set_defaults(func=cmd_run)
    test = sub.add_parser(
        "test", help="start services and run lint, types, migrations check, pytest"
    )
    test.add_argument("--pytest-only", action="store_true")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    sub.add_parser("env", help="print exports for the embedded services").set_defaults(func=cmd_env)
    sub.add_parser("stop", help="stop the embedded services").set_defaults(func=cmd_stop)
    units = sub.add_parser("systemd", help="write systemd units made from the Procfile")
    units.add_argument("--out", default="deploy")
    units.add_argument("--gen", type=int, default=2, help="gen processes that ludus.target starts")
    units.add_argument("--root", default="/srv/ludus", help="the checkout, with its .venv")
    units.add_argument("--user", default="ludus", help="the user the processes run as")
    units.add_argument("--env-file", default="/etc/ludus/ludus.env", help="the settings")
    units.set_defaults(func=cmd_systemd)
    faults = sub.add_parser(
        "chaos", help="inject faults into an arena under load, check nothing is lost"
    )
    chaos.add_arguments(faults)
    faults.set_defaults(func=chaos.cmd_chaos)
    args = parser.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
