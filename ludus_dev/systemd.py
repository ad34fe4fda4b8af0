"""systemd units for real hosts, made from the Procfile: `python -m ludus_dev systemd --out deploy/`.

One unit per process type (a template, `ludus-gen@.service`, for a type run several times), each
running its Procfile line as `make run` does (`/bin/sh -c 'exec LINE'`) and started again by
systemd when it fails, with a growing delay; `ludus.target` starts the formation. The committed
deploy/ folder is this module's output for the defaults; a test keeps it equal to the Procfile.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ludus_dev.supervision import procfile

HEADER = (
    "# Made from the Procfile by `python -m ludus_dev systemd --out deploy/`:"
    " change the Procfile, then run it again.\n"
)


def exec_start(line: str) -> str:
    """The ExecStart value that runs a Procfile line through the shell, as written: systemd's own
    `$` and `%` expansions escaped, so that the shell sees `${VAR:-default}`, `$$` and `%h`."""
    if "'" in line or "\\" in line:
        raise ValueError(f"a Procfile line with quotes or backslashes needs escaping: {line!r}")
    return "/bin/sh -c 'exec " + line.replace("$", "$$").replace("%", "%%") + "'"


def units(
    types: Mapping[str, str],
    formation: Mapping[str, int],
    *,
    root: str = "/srv/ludus",
    user: str = "ludus",
    env_file: str = "/etc/ludus/ludus.env",
) -> dict[str, str]:
    """File name -> text of each unit: one per process type, and ludus.target."""
    files: dict[str, str] = {}
    wanted: list[str] = []
    for kind, line in types.items():
        template = kind in formation
        name = f"ludus-{kind}@.service" if template else f"ludus-{kind}.service"
        if template:
            wanted += [f"ludus-{kind}@{i}.service" for i in range(1, formation[kind] + 1)]
        else:
            wanted.append(name)
        files[name] = HEADER + "\n".join(
            [
                "[Unit]",
                f"Description=Ludus {kind}{' %i' if template else ''} (Procfile: {kind})",
                "PartOf=ludus.target",
                "After=network-online.target",
                "Wants=network-online.target",
                "# Never stop restarting: the growing delay below bounds how often.",
                "StartLimitIntervalSec=0",
                "",
                "[Service]",
                "Type=exec",
                f"User={user}",
                f"WorkingDirectory={root}",
                f"EnvironmentFile={env_file}",
                f"Environment=PATH={root}/.venv/bin:/usr/local/bin:/usr/bin:/bin",
                f"ExecStart={exec_start(line)}",
                "Restart=on-failure",
                "# 2 s after a failure, growing to 60 s over 10 failures in a row (systemd 254+; older: 2 s).",
                "RestartSec=2",
                "RestartSteps=10",
                "RestartMaxDelaySec=60",
                "# SIGTERM to the process, SIGKILL to what is left of it (a pool's children) after 15 s.",
                "KillMode=mixed",
                "TimeoutStopSec=15",
                "",
                "[Install]",
                "WantedBy=ludus.target",
                "",
            ]
        )
    files["ludus.target"] = HEADER + "\n".join(
        [
            "[Unit]",
            "Description=Ludus: every process type of the Procfile",
            f"Wants={' '.join(wanted)}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )
    return files


def write_units(out: Path, formation: Mapping[str, int], **paths: str) -> list[Path]:
    """Write `units` for the Procfile into `out`; `paths`: root, user, env_file."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, text in units(procfile(), formation, **paths).items():
        (out / name).write_text(text)
        made.append(out / name)
    return made
