"""`make run`'s processes under supervisord, configured from the Procfile at every start.

The Procfile stays the one definition of Ludus's process types; this module turns it into a
supervisord configuration (and, for real hosts, into systemd units: `ludus_dev.systemd`). Under
supervisord a process that exits is started again while the others keep serving:

- one that had been running (`STARTSECS` or longer) is started again at once;
- one that exits again while starting backs off (supervisord waits 1 s, 2 s, 3 s... between tries)
  and is given up after `START_RETRIES` tries in a row (`supervisorctl -c CONF start NAME` tries
  again).

supervisord logs each exit ("exited: gen.1 (terminated by SIGKILL; not expected)"); an event
listener below (`listen`, run by supervisord itself) adds how often, and writes every process's
state, restarts and last exit to `processes.json` in the supervisor folder, which /healthz and the
staff status page read. Another (`relay_output`) prints what the processes write, each line after
its process's name. Ctrl-C (SIGINT) or SIGTERM stops supervisord, which stops every process
(each with its process group: celery's pool, uvicorn's workers) before it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xmlrpc.client import Fault

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
STATE_FILE = "processes.json"
STARTSECS = 5  # up this long counts as started: a later exit restarts at once
START_RETRIES = 30  # quick exits in a row before supervisord gives up (waits 1+2+...+30 s ≈ 8 min)
STOP_WAIT_S = 15  # SIGTERM, then SIGKILL after this long
# Start order: what others wait for first (supervisord stops in the reverse order).
PRIORITY = {"engine": 100, "worker": 200, "gen": 200, "beat": 300, "web": 400}

LISTENER = "restarts"  # supervisord's names for the event listeners below
OUTPUT = "output"

_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def procfile(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's process types and their command lines (shell syntax), in order."""
    types: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not `type: command`: {line!r}")
        types[match[1]] = match[2].strip()
    return types


def process_names(types: Mapping[str, str], formation: Mapping[str, int]) -> dict[str, str]:
    """Each process supervisord runs, as its RPC names it ("gen:gen.2"), by its short name ("gen.2"):
    one per type, or `formation[type]` numbered from 1."""
    names: dict[str, str] = {}
    for kind in types:
        count = formation.get(kind, 1)
        if count == 1:
            names[kind] = f"{kind}:{kind}"
        else:
            names |= {f"{kind}.{i}": f"{kind}:{kind}.{i}" for i in range(1, count + 1)}
    return names


def supervisord_config(
    folder: Path, types: Mapping[str, str], formation: Mapping[str, int], cwd: Path = ROOT
) -> str:
    """supervisord's configuration: every Procfile line as a program run by `/bin/sh -c 'exec
    LINE'` (the shell expands its `${VAR:-default}`s, then becomes the process itself, so the pid
    supervisord watches is the server's), with its output on supervisord's standard output."""

    def section(header: str, **options: object) -> str:
        return "\n".join([f"[{header}]", *(f"{k}={v}" for k, v in options.items()), ""])

    def command(argv: list[str]) -> str:
        return shlex.join(argv).replace("%", "%%")  # supervisord expands %(name)s in values

    sections = [
        section(
            "supervisord",
            nodaemon="true",  # in the foreground, its log on standard output too
            logfile=folder / "supervisord.log",
            logfile_maxbytes="5MB",
            logfile_backups=1,
            pidfile=folder / "supervisord.pid",
            childlogdir=folder,
            directory=cwd,
            # as root it says so in a CRIT line on every start unless told the user
            **({"user": "root"} if os.geteuid() == 0 else {}),
        ),
        section("unix_http_server", file=folder / "supervisor.sock", chmod="0700"),
        section(
            "rpcinterface:supervisor",
            **{"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
        ),
        section("supervisorctl", serverurl=f"unix://{folder / 'supervisor.sock'}"),
    ]
    for kind, line in types.items():
        count = formation.get(kind, 1)
        sections.append(
            section(
                f"program:{kind}",
                command=command(["/bin/sh", "-c", f"exec {line}"]),
                process_name="%(program_name)s"
                if count == 1
                else "%(program_name)s.%(process_num)d",
                numprocs=count,
                numprocs_start=1,
                directory=cwd,
                priority=PRIORITY.get(kind, 500),
                autorestart="true",
                startsecs=STARTSECS,
                startretries=START_RETRIES,
                stopsignal="TERM",
                stopwaitsecs=STOP_WAIT_S,
                stopasgroup="true",
                killasgroup="true",
                redirect_stderr="true",
                stdout_logfile="NONE",  # the output listener prints it, each line with its name
                stdout_events_enabled="true",
            )
        )
    width = max(len(name) for name in process_names(types, formation))
    listeners = {
        LISTENER: ("PROCESS_STATE", ["state", str(folder / STATE_FILE)]),
        OUTPUT: ("PROCESS_LOG", ["output", str(width)]),
    }
    for name, (events, args) in listeners.items():
        sections.append(
            section(
                f"eventlistener:{name}",
                command=command([sys.executable, "-m", "ludus_dev.supervision", *args]),
                events=events,
                buffer_size=10000,  # events wait here while the listener is busy
                priority=1,
                directory=cwd,
                autorestart="true",
                stderr_logfile="/dev/stdout",  # listeners speak to supervisord on stdout
                stderr_logfile_maxbytes=0,
            )
        )
    return "\n".join(sections)


def start(
    folder: Path,
    *,
    env: Mapping[str, str],
    formation: Mapping[str, int],
    procfile_path: Path = PROCFILE,
    cwd: Path = ROOT,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Write the configuration for `procfile_path` into `folder` (and forget the last run's
    processes.json), then start supervisord in the foreground."""
    if pid := running(folder):
        raise SystemExit(
            f"supervisord from an earlier run still runs from {folder} (pid {pid}), with its "
            "processes: `make stop` stops them"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).unlink(missing_ok=True)
    conf = folder / "supervisord.conf"
    conf.write_text(supervisord_config(folder, procfile(procfile_path), formation, cwd))
    out = popen.get("stdout") or sys.stdout
    _appending(out if isinstance(out, int) else out.fileno())
    argv = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    return subprocess.Popen(argv, cwd=cwd, env=dict(env), **popen)


def _appending(fd: int) -> None:
    """Make a regular file that is to be supervisord's standard output append-only (`make run >
    run.log`): supervisord and each process's log handler reopen /dev/stdout, and without
    O_APPEND each would write from its own offset, over the others' lines."""
    if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):  # not subprocess.DEVNULL nor PIPE
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)


def wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for supervisord; SIGTERM or Ctrl-C here stops it (and so every process) first."""
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # the terminal sent supervisord its SIGINT too
                proc.send_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)


def running(folder: Path) -> int | None:
    """The pid of the supervisord running from `folder`, if one does."""
    try:
        pid = int((folder / "supervisord.pid").read_text())
        # A pid file left by a crash may name another process by now.
        return pid if b"supervisord" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def stop(folder: Path, timeout_s: float = 60) -> bool:
    """Stop the supervisord running from `folder` (whose command was killed without stopping it),
    and so every process it runs; False if none runs."""
    pid = running(folder)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while running(folder) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def rpc(folder: Path) -> Any:
    """supervisord's XML-RPC interface (`.supervisor.getProcessInfo(name)`...) over its socket."""
    from xmlrpc.client import ServerProxy

    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{folder / 'supervisor.sock'}")
    return ServerProxy("http://127.0.0.1", transport=transport).supervisor


def read_state(path: Path) -> dict[str, dict[str, Any]]:
    """processes.json as the listener last wrote it: {} when there is none (not under make run)."""
    try:
        state: dict[str, dict[str, Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state


# The event listener: supervisord runs it and sends it every process state change.

_SIGNAL = re.compile(r"terminated by (SIG[A-Z0-9]+)")
_STATUS = re.compile(r"exit status (-?\d+)")


def exit_code(reason: str) -> int | None:
    """The exit code that supervisord's reason stands for: N for "exit status N", minus the signal's
    number for "terminated by SIGKILL" (as Python's returncode says it); None if it says neither."""
    if match := _SIGNAL.search(reason):
        return -int(getattr(signal.Signals, match[1], 0))
    if match := _STATUS.search(reason):
        return int(match[1])
    return None


def _exit_reason(server: Any, name: str, info: dict[str, Any]) -> str:
    """Why `name` exited, in supervisord's words from its last log line about it ("terminated by
    SIGKILL", "exit status 1"); from its recorded exit status if the log has no such line."""
    pattern = re.compile(rf"exited: {re.escape(name)} \((.+?)(?:; (?:not )?expected)?\)$")
    try:
        tail = server.readLog(-8000, 0)
    except (Fault, OSError):  # no log file: fall back to the status
        tail = ""
    for line in reversed(tail.splitlines()):
        if match := pattern.search(line):
            return str(match[1])
    status = info.get("exitstatus")
    return "killed by a signal" if status == -1 else f"exit status {status}"


def _kill_leftovers(pid: int) -> None:
    """Kill what a process that died left of its process group (supervisord gives each its own,
    led by its pid): a celery master killed with SIGKILL leaves its pool's children behind, and the
    process started in its place makes a pool of its own."""
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _record(
    state: dict[str, dict[str, Any]], server: Any, event: str, fields: dict[str, str]
) -> str | None:
    """Apply one PROCESS_STATE event to `state`; the line to log about it, if any."""
    name = fields["processname"]
    group = fields.get("groupname") or name
    if group in {LISTENER, OUTPUT}:
        return None
    entry = state.setdefault(name, {"restarts": 0, "state": "", "pid": None, "last_exit": None})
    entry["state"] = event.removeprefix("PROCESS_STATE_")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if event == "PROCESS_STATE_RUNNING":
        entry["pid"] = int(fields.get("pid", 0)) or None
        if entry["restarts"]:
            return f"{name} is running again (pid {entry['pid']})"
        return None
    if event not in {"PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"}:
        if event == "PROCESS_STATE_FATAL":
            return (
                f"{name} exited {START_RETRIES} times in a row while starting: no more retries "
                f"(see its output above; `supervisorctl -c <folder>/supervisord.conf start {name}`)"
            )
        return None
    try:
        info = server.getProcessInfo(f"{group}:{name}")
    except (Fault, OSError):  # gone from the configuration: nothing to say about it
        info = {}
    reason = _exit_reason(server, name, info)
    _kill_leftovers(int(fields.get("pid", 0)))
    entry["restarts"] += 1
    entry["last_exit"] = {"reason": reason, "code": exit_code(reason), "at": now}
    entry["pid"] = None
    times = "1 restart" if entry["restarts"] == 1 else f"{entry['restarts']} restarts"
    if event == "PROCESS_STATE_EXITED":
        return f"{name} exited ({reason}); starting it again at once: {times} since the start"
    tries = int(fields.get("tries", 0))
    return (
        f"{name} exited while starting ({reason}); trying again in {tries} s "
        f"(quick exit {tries} of {START_RETRIES} in a row): {times} since the start"
    )


def listen(path: Path) -> None:
    """supervisord's event listener: keep `path` (processes.json) and log restarts on stderr."""
    from supervisor import childutils

    server = childutils.getRPCInterface(os.environ).supervisor
    state = read_state(path)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        fields = dict(part.split(":", 1) for part in payload.split("\n", 1)[0].split())
        message = _record(state, server, headers["eventname"], fields)
        draft = path.with_suffix(".tmp")
        draft.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(draft, path)
        if message:
            stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} ludus: {message}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


def relay_output(width: int) -> None:
    """supervisord's event listener for what the processes write: each line on stderr, after the
    name of the process that wrote it (`gen.2  | ...`), as a Procfile runner shows them. A line
    that comes in parts waits for its end."""
    from supervisor import childutils

    partial: dict[str, str] = {}
    while True:
        _, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        header, _, data = payload.partition("\n")
        name = dict(part.split(":", 1) for part in header.split())["processname"]
        *lines, partial[name] = (partial.get(name, "") + data).split("\n")
        if lines:
            sys.stderr.write("".join(f"{name:<{width}} | {line}\n" for line in lines))
            sys.stderr.flush()
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "state":
        listen(Path(sys.argv[2]))
    else:
        relay_output(int(sys.argv[2]))
