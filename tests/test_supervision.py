"""`make run` keeps serving when one of its processes dies: supervisord, configured from the Procfile,
starts it again while the others go on; the systemd units for real hosts say the same."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ludus_dev import supervision
from ludus_dev.__main__ import wait_battle_ready
from ludus_dev.systemd import units
from tests.helpers import ROOT, database_url_for_tests, run_async, wait_for


def _info(folder: Path, name: str) -> dict[str, Any]:
    info: dict[str, Any] = supervision.rpc(folder).getProcessInfo(name)
    return info


def _running(folder: Path, name: str) -> bool:
    try:
        return bool(_info(folder, name)["statename"] == "RUNNING")
    except OSError:  # supervisord is not listening yet
        return False


def _alive(pid: int) -> bool:
    """Whether `pid` names a live process (a zombie is dead; 0 names none: supervisord's pid for a
    process between tries)."""
    try:
        return pid > 0 and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> int:
    """Stop a command started in its own session as a terminal's Ctrl-C would (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def test_it_starts_a_killed_process_again_says_why_and_stops_everything_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """kill -9 of one process: it comes back (its pool's children killed, not left beside the new
    one) and processes.json says how often and why; the others keep their pids. A process that
    exits while starting is retried after a backoff. Each line a process writes is shown after its
    name. Ctrl-C stops every process."""
    (tmp_path / "Procfile").write_text(
        "# a comment\n"
        "pool: sh -c 'sleep 1001 & wait'\n"
        "steady: sleep 1002\n"
        "crash: sh -c 'echo failing soon; sleep 0.2; exit 3'\n"
    )
    folder = tmp_path / "supervisor"
    log = (tmp_path / "out.log").open("wb")
    proc = supervision.start(
        folder,
        env=os.environ,
        formation={"pool": 2},
        procfile_path=tmp_path / "Procfile",
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state_file = folder / supervision.STATE_FILE
    names = supervision.process_names(supervision.procfile(tmp_path / "Procfile"), {"pool": 2})
    assert set(names) == {"pool.1", "pool.2", "steady", "crash"}
    try:
        wait_for(lambda: _running(folder, names["steady"]), timeout=30)
        pids = {name: _info(folder, rpc_name)["pid"] for name, rpc_name in names.items()}
        pool_child = wait_for(lambda: _children(pids["pool.2"]))[0]

        os.kill(pids["pool.2"], signal.SIGKILL)

        def restarted() -> bool:
            info = _info(folder, names["pool.2"])
            return bool(info["statename"] == "RUNNING" and info["pid"] != pids["pool.2"])

        wait_for(restarted, timeout=30)
        pids["pool.2 again"] = _info(folder, names["pool.2"])["pid"]
        wait_for(lambda: not _alive(pool_child))
        wait_for(lambda: supervision.read_state(state_file).get("pool.2", {}).get("pid"))
        state = supervision.read_state(state_file)
        assert state["pool.2"]["restarts"] == 1
        assert state["pool.2"]["last_exit"]["reason"] == "terminated by SIGKILL"
        assert state["pool.2"]["last_exit"]["code"] == -signal.SIGKILL
        assert state["pool.2"]["state"] == "RUNNING"
        for name in ("pool.1", "steady"):
            assert _info(folder, names[name])["pid"] == pids[name]
            assert state[name]["restarts"] == 0 and state[name]["last_exit"] is None
        wait_for(lambda: supervision.read_state(state_file)["crash"]["restarts"] >= 2)
        crash = supervision.read_state(state_file)["crash"]
        assert crash["last_exit"]["code"] == 3
        assert crash["state"] in {"BACKOFF", "STARTING"}  # waiting between tries, or trying
        assert "restarts" not in supervision.read_state(state_file)  # the listener itself
    finally:
        rc = _stop(proc)
        log.close()
    out = (tmp_path / "out.log").read_text()
    assert rc == 0, out
    assert "pool.2 exited (terminated by SIGKILL); starting it again at once: 1 restart" in out
    assert "crash exited while starting (exit status 3); trying again in 1 s" in out
    assert "pool.2 is running again" in out
    assert "\ncrash  | failing soon\n" in out  # a process's output, after its name
    assert not any(_alive(pid) for pid in pids.values())


def test_a_sigterm_to_the_run_command_stops_supervisord_and_every_process(tmp_path: Path) -> None:
    """What `make run` does with supervisord (`supervision.wait`), stopped by SIGTERM to itself
    alone, as a service manager or `kill` would: it passes the signal on and exits when all is down."""
    (tmp_path / "Procfile").write_text("one: sleep 1003\ntwo: sleep 1004\n")
    folder = tmp_path / "supervisor"
    script = (
        "import os, sys; from pathlib import Path; from ludus_dev import supervision; "
        f"p = supervision.start(Path({str(folder)!r}), env=os.environ, formation={{}}, "
        f"procfile_path=Path({str(tmp_path / 'Procfile')!r}), cwd=Path({str(tmp_path)!r})); "
        "sys.exit(supervision.wait(p))"
    )
    with (tmp_path / "out.log").open("wb") as log:
        run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for(lambda: _running(folder, "one") and _running(folder, "two"), timeout=30)
        pids = [info["pid"] for info in supervision.rpc(folder).getAllProcessInfo()]
        supervisord = int((folder / "supervisord.pid").read_text())
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, (tmp_path / "out.log").read_text()
    finally:
        if run.poll() is None:
            run.kill()
    assert not any(_alive(pid) for pid in [supervisord, *pids])


def test_make_stop_stops_a_supervisord_left_running_and_a_second_run_refuses_to_start_beside_it(
    tmp_path: Path,
) -> None:
    """The run command killed with SIGKILL leaves supervisord and its processes running: another run
    from the same data folder refuses to start a second set, and `python -m ludus_dev stop` stops
    them."""
    (tmp_path / "Procfile").write_text("one: sleep 1005\n")
    folder = tmp_path / "data" / "supervisor"
    with (tmp_path / "out.log").open("wb") as log:
        left = supervision.start(
            folder, env=os.environ, formation={}, procfile_path=tmp_path / "Procfile",
            cwd=tmp_path, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait_for(lambda: _running(folder, "one"), timeout=30)
        one = _info(folder, "one")["pid"]
        with pytest.raises(SystemExit, match="make stop"):
            supervision.start(
                folder, env=os.environ, formation={}, procfile_path=tmp_path / "Procfile"
            )
        assert _info(folder, "one")["pid"] == one
        env = os.environ | {"LUDUS_DATA_DIR": str(tmp_path / "data")}
        out = subprocess.run(
            [sys.executable, "-m", "ludus_dev", "stop"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "stopped supervisord"
        assert left.wait(10) == 0 and not _alive(one)
    finally:
        if left.poll() is None:
            left.kill()


def test_the_systemd_units_in_deploy_are_made_from_the_procfile(tmp_path: Path) -> None:
    """deploy/ is what `python -m ludus_dev systemd --out deploy/` makes now: each unit runs its
    Procfile line as written (systemd's `$` and `%` escaped) and is restarted when it fails."""
    types = supervision.procfile()
    made = units(types, {"gen": 2})
    committed = {path.name: path.read_text() for path in (ROOT / "deploy").iterdir()}
    assert committed == made, "run `python -m ludus_dev systemd --out deploy/` and commit deploy/"
    for kind, line in types.items():
        unit = made[f"ludus-{kind}@.service" if kind == "gen" else f"ludus-{kind}.service"]
        (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.MULTILINE)
        unescaped = exec_start.replace("$$", "$").replace("%%", "%")
        assert unescaped == f"/bin/sh -c 'exec {line}'"
        assert "\nRestart=on-failure\n" in unit
    wanted = re.findall(r"^Wants=(.*)$", made["ludus.target"], re.MULTILINE)[0].split()
    assert wanted == [
        "ludus-web.service", "ludus-worker.service", "ludus-gen@1.service",
        "ludus-gen@2.service", "ludus-beat.service", "ludus-engine.service",
        "ludus-train.service",
    ]  # fmt: skip
    analyze = subprocess.run(["sh", "-c", "command -v systemd-analyze"], capture_output=True)
    if analyze.returncode == 0:  # systemd's own check, where this machine has it
        for name, text in made.items():
            (tmp_path / name).write_text(text)
        out = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
            capture_output=True, text=True,
        )  # fmt: skip
        complaints = [
            line
            for line in (out.stdout + out.stderr).splitlines()
            if not re.search(r"Unknown key '(RestartSteps|RestartMaxDelaySec)'", line)  # < 254
        ]
        assert complaints == []


@pytest.mark.django_db
def test_healthz_and_the_status_page_show_each_process_its_restarts_and_last_exit(
    tmp_path: Path, settings: Any
) -> None:
    """What the supervisor records in the data folder, shown to the metrics token and to staff; a
    process that is not running (retrying, or given up) makes the arena degraded, not down."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.DATA_DIR = tmp_path
    settings.METRICS_TOKEN = TOKEN
    settings.LUDUS_REQUIRED_QUEUES = []
    sigkill = {"reason": "terminated by SIGKILL", "code": -9, "at": "2026-01-02T03:04:05+00:00"}
    failing = {"reason": "exit status 1", "code": 1, "at": "2026-01-02T03:05:00+00:00"}
    processes = {
        "web": {"state": "RUNNING", "pid": 101, "restarts": 0, "last_exit": None},
        "gen.2": {"state": "RUNNING", "pid": 102, "restarts": 2, "last_exit": sigkill},
        "engine": {"state": "FATAL", "pid": None, "restarts": 30, "last_exit": failing},
    }
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "supervisor" / supervision.STATE_FILE).write_text(json.dumps(processes))
    client = Client()
    details = client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert details["processes"] == processes
    assert details["status"] == "degraded" and details["degraded"] == ["process:engine"]
    assert client.get("/healthz").json() == {"status": "degraded"}  # the details are staff's
    staff = get_user_model().objects.create_user("carol", password="pw-carol-123", is_staff=True)
    client.force_login(staff)
    page = client.get("/status/").content.decode()
    row = re.search(r'<tr data-testid="process-gen.2">(.*?)</tr>', page, re.DOTALL)
    assert row is not None
    assert "<td>2</td>" in row[1] and "terminated by SIGKILL (code -9)" in row[1]
    assert re.search(r'data-testid="process-engine">.*?fatal.*?exit status 1', page, re.DOTALL)
    (tmp_path / "supervisor" / supervision.STATE_FILE).unlink()  # no supervisor: no table
    assert "Processes" not in client.get("/status/").content.decode()
    assert client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()["processes"] == {}


# The whole formation under the run command.

KINDS = ("web", "worker", "gen", "beat", "engine", "train")
TOKEN = "supervision-test-token"


@dataclass
class Arena:
    url: str
    folder: Path
    log: Path
    proc: subprocess.Popen[bytes]
    # Per request to the web: when it was sent and when it ended (monotonic), whether it answered.
    answers: list[tuple[float, float, bool]] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _answers(url: str) -> bool:
    """Whether the web serves the arena's page (a fresh connection each time)."""
    try:
        return httpx.get(url + "/", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def _poll_web(arena: Arena, stop: threading.Event) -> None:
    """Ask the web for the arena's page over and over, noting when and whether it answered."""
    while not stop.is_set():
        sent = time.monotonic()
        answered = _answers(arena.url)
        arena.answers.append((sent, time.monotonic(), answered))
        stop.wait(0.25)


@pytest.fixture
def arena(tmp_path: Path, settings: Any) -> Iterator[Arena]:
    """`python -m ludus_dev run` on the test database and Redis, with the quick zoo (the demo zoo
    takes minutes to build) and one gen process (two would only cost the shared CPUs more)."""
    from modelhub.zoo.serving import free_port
    from modelhub.zoo.testing import cached_quick_zoo

    web_port, engine_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    env |= {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "LUDUS_DATA_DIR": str(tmp_path / "data"),
        "LUDUS_MODELS_DIR": str(cached_quick_zoo()),
        "LUDUS_ENGINE_PORT": str(engine_port),
        "LUDUS_LOCAL_ENGINE_URL": f"http://127.0.0.1:{engine_port}/v1",
        "LUDUS_METRICS_TOKEN": TOKEN,
        "GEN_PROCESSES": "1",
        "GEN_CONCURRENCY": "8",
        "GEN_DB_POOL_MAX": "4",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ludus_dev", "run", "--port", str(web_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    arena = Arena(f"http://127.0.0.1:{web_port}", tmp_path / "data" / "supervisor", log, proc)
    try:
        deadline = time.monotonic() + 240
        while "Ludus is ready at" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, arena.output()
            time.sleep(0.5)
        yield arena
    finally:
        try:
            pids = [info["pid"] for info in supervision.rpc(arena.folder).getAllProcessInfo()]
        except OSError:  # supervisord is gone already
            pids = []
        rc = _stop(proc)
    assert rc == 0, arena.output()
    assert not any(_alive(pid) for pid in pids), arena.output()  # Ctrl-C stopped every process


def _battle_streams_and_takes_a_vote(url: str) -> None:
    """A battle as a browser runs it: start it, watch both answers stream on the generations socket
    to their end, vote on the page's form."""
    import aiohttp

    from arena.models import Vote
    from modelhub.models import Generation

    csrf = secrets.token_hex(16)  # an unmasked secret: Django takes it from cookie and header
    with httpx.Client(
        base_url=url,
        cookies={"csrftoken": csrf},
        headers={"X-CSRFToken": csrf},
        follow_redirects=True,
        timeout=30,
    ) as client:
        page = client.post("/battles/", data={"prompt": "Tell me about the sea."})
        assert page.status_code == 200, page.text[:2000]
        battle_id = str(page.url).rstrip("/").rsplit("/", 1)[1]
        answers = re.findall(r'data-gen="([0-9a-f-]+)" data-token="([^"]+)"', page.text)
        assert len(answers) == 2, page.text[:2000]

        async def watch() -> dict[str, str]:
            texts = {gid: "" for gid, _ in answers}
            ended: set[str] = set()
            subscribe = [{"id": gid, "after": 0, "token": token} for gid, token in answers]
            headers = {"Cookie": f"sessionid={client.cookies['sessionid']}", "Origin": url}
            ws_url = url.replace("http", "ws", 1) + "/ws/generations/"
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(ws_url, headers=headers) as ws,
            ):
                await ws.send_json({"type": "subscribe", "generations": subscribe})
                while ended != set(texts):
                    message = await ws.receive_json(timeout=120)
                    for frame in message if isinstance(message, list) else [message]:
                        assert frame["type"] in {"delta", "done", "snapshot"}, frame
                        if frame["type"] == "done":
                            ended.add(frame["id"])
                        elif frame["type"] == "delta":
                            texts[frame["id"]] += frame["text"]
                        else:  # a snapshot holds the whole text so far
                            texts[frame["id"]] = frame["text"]
            return texts

        texts = run_async(asyncio.wait_for(watch(), 180))
        # What the page showed is what was stored, and the battle said something.
        stored = dict(Generation.objects.filter(id__in=texts).values_list("id", "text"))
        assert {str(gid): text for gid, text in stored.items()} == texts
        assert any(texts.values()), texts
        turn = re.search(r'name="turn" value="(\d+)"', client.get(f"/b/{battle_id}/").text)
        assert turn is not None
        vote = client.post(
            f"/b/{battle_id}/vote/",
            data={"turn": turn[1], "choice": "a"},
            headers={"HX-Request": "true"},
        )
        assert vote.status_code == 200, vote.text[:2000]
    assert Vote.objects.filter(battle_id=battle_id).exists()


@pytest.mark.django_db(transaction=True)  # the run's processes read and write the test database
def test_a_killed_process_of_each_type_comes_back_while_the_others_serve(arena: Arena) -> None:
    """kill -9 of each process type in turn under the run command: it comes back, the web answers
    throughout except while the web process itself is down, a battle started after each restart
    streams and takes a vote, and the restarts are on record."""
    types = supervision.procfile()
    names = supervision.process_names(types, {"gen": 1})
    assert set(names) == set(KINDS) == set(types)
    stop = threading.Event()
    poller = threading.Thread(target=_poll_web, args=(arena, stop), daemon=True)
    poller.start()
    web_down = (0.0, 0.0)  # from its kill until it answered again
    try:
        _battle_streams_and_takes_a_vote(arena.url)
        for kind in KINDS:
            before = _info(arena.folder, names[kind])["pid"]
            since = datetime.now(UTC)
            killed = time.monotonic()
            os.kill(before, signal.SIGKILL)

            def back() -> bool:
                info = _info(arena.folder, names[kind])  # noqa: B023 - called in this iteration
                return bool(info["statename"] == "RUNNING" and info["pid"] != before)  # noqa: B023

            wait_for(back, timeout=120)
            if kind == "web":
                wait_for(lambda: _answers(arena.url), timeout=60)
                web_down = (killed, time.monotonic())
            # Probes since the kill found two models answering and no part down: battles can start.
            assert wait_battle_ready(arena.url, since=since, timeout_s=180, token=TOKEN), kind
            _battle_streams_and_takes_a_vote(arena.url)
            state = supervision.read_state(arena.folder / supervision.STATE_FILE)[kind]
            assert state["restarts"] == 1, (kind, state)
            assert state["last_exit"]["code"] == -signal.SIGKILL, (kind, state)
    finally:
        stop.set()
        poller.join()
    details = httpx.get(
        arena.url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).json()
    for kind in KINDS:
        assert details["processes"][kind]["restarts"] == 1, details["processes"]
        assert details["processes"][kind]["last_exit"]["reason"] == "terminated by SIGKILL"
    # Every request that got no answer was under way while the web process was down.
    missed = [(sent, ended) for sent, ended, answered in arena.answers if not answered]
    assert all(sent <= web_down[1] and ended >= web_down[0] for sent, ended in missed), (
        web_down,
        missed,
    )
    assert sum(answered for _, _, answered in arena.answers) > 20  # it polled throughout
    out = arena.log.read_text(errors="replace")
    for kind in KINDS:
        assert f"{kind} exited (terminated by SIGKILL); starting it again at once" in out
