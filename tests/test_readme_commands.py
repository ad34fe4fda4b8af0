"""Every command the README shows works exactly as written, with `make env`'s exports.

The README is read at test time. Its commands that run Ludus by hand are taken from its code blocks
(fenced `sh` blocks and indented blocks) and from inline code that starts with a Python
interpreter (and abbreviates nothing): `manage.py` commands, the ratings command line and the export `curl`. Each runs
through `sh` as a user would type it, in a folder that holds the checkout's `.venv` and `manage.py`,
with no environment but PATH, HOME and what `make env` exports against the test database, so no
signing key or setting comes from the test itself. Placeholders in capitals (USER, NAME, ID, C)
stand for what an earlier step made, and an optional part in brackets runs both without and with
it.

Not run: `manage.py createsuperuser` asks for a password on a terminal (and without one it only
says it skipped), and the commands that install, serve or test (`make ...`, `pip install`, servers,
workers) are the development commands themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from arena.models import ApiToken
from modelhub.models import Endpoint, Model
from tests.helpers import ROOT, database_url_for_tests
from tests.leaderboard.votes import simulate_votes

pytestmark = pytest.mark.django_db(transaction=True)  # the commands' processes see committed rows

INTERACTIVE = {"createsuperuser"}
# Commands that train a model: tests/training runs them with a quick zoo and a frozen version
# (test_command.py, test_demo_loop.py). Here each must be found and parsed with `make env`'s
# exports, naming a subcommand the command has, and `finetune list` runs as written.
TRAINING = {"finetune", "demo_loop"}


def _fenced_blocks(text: str) -> Iterator[tuple[str, list[str]]]:
    lang: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                yield lang, lines
                lang = None
        elif lang is not None:
            lines.append(line)


def readme_commands(text: str) -> list[str]:
    """The README's command lines that run Ludus by hand, in order, comments dropped."""
    found: list[str] = []
    outside: list[str] = []
    for lang, lines in _fenced_blocks(text):
        if lang in {"sh", "bash", "shell", "console"}:
            found += lines
    in_fence = False
    for line in text.splitlines():
        in_fence = in_fence != line.startswith("```")
        if not in_fence and not line.startswith("```"):
            outside.append(line)
    prose = "\n".join(outside)
    found += [m.group(1) for m in re.finditer(r"^    (\S.*)$", prose, re.MULTILINE)]
    # Inline code that starts with an interpreter, unless it abbreviates one ("...").
    found += [c for c in re.findall(r"`((?:\.venv/bin/)?python [^`]+)`", prose) if "..." not in c]
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in found]
    return [c for c in commands if re.search(r"manage\.py |-m arena\.ratings |^curl ", c)]


def variants(command: str) -> list[str]:
    """Without every optional `[...]` part, then with each one."""
    optional = re.findall(r"\s*\[([^\]]+)\]", command)
    bare = re.sub(r"\s*\[[^\]]+\]", "", command)
    return [bare] + [
        re.sub(r"\s*\[[^\]]+\]", "", command.replace(f"[{o}]", o, 1)) for o in optional
    ]


def _kind(command: str) -> str:
    if command.startswith("curl "):
        return "curl"
    if "-m arena.ratings" in command:
        return "ratings"
    words = command.split("manage.py ", 1)[1].split()
    return " ".join(words[:2]) if words[0] in {"models", "apitoken"} else words[0]


def _make_env_exports(data_dir: Path) -> dict[str, str]:
    """`make env`'s lines, read by a shell, for the test database and Redis and no signing key."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env |= {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "LUDUS_DATA_DIR": str(data_dir),
    }
    env.pop("PYTEST_XDIST_WORKER", None)  # a shell by hand is no test process
    out = subprocess.run(
        [sys.executable, "-m", "ludus_dev", "env"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    shell = subprocess.run(
        ["sh", "-c", out.stdout + "\nenv -0"], env={}, capture_output=True, text=True, check=True
    )
    read = dict(line.split("=", 1) for line in shell.stdout.split("\0") if "=" in line)
    names = re.findall(r"^export (\w+)=", out.stdout, re.MULTILINE)
    return {name: read[name] for name in names}


class Shell:
    """A terminal in a folder beside the checkout: its `.venv` and `manage.py`, nothing else."""

    def __init__(self, folder: Path, exports: dict[str, str]) -> None:
        self.folder = folder
        folder.mkdir()
        (folder / ".venv").symlink_to(ROOT / ".venv")
        (folder / "manage.py").symlink_to(ROOT / "manage.py")
        venv_bin = str(Path(sys.executable).parent)
        path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
        self.env = {"PATH": path, "HOME": str(folder)} | exports

    def run(self, command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["sh", "-c", command],
            cwd=self.folder, env=self.env | extra_env, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, f"`{command}` failed ({done.returncode}):\n{done.stderr}"
        return done


def _fill(command: str, **values: str) -> str:
    for placeholder, value in values.items():
        command = re.sub(rf"\b{placeholder}\b", value, command)
    return command


def test_it_extracts_commands_and_their_optional_parts() -> None:
    text = (
        "Run `.venv/bin/python manage.py models list` or:\n\n"
        "```sh\nmake run   # serves\n.venv/bin/python manage.py models load m.yaml  # a file\n```\n\n"
        "    python -m arena.ratings b.jsonl [--ipw] [--category C]\n\n"
        "```yaml\nmodels: []\n```\n"
    )
    assert readme_commands(text) == [
        ".venv/bin/python manage.py models load m.yaml",
        "python -m arena.ratings b.jsonl [--ipw] [--category C]",
        ".venv/bin/python manage.py models list",
    ]
    assert variants("x [--ipw] [--category C]") == ["x", "x --ipw", "x --category C"]


def test_it_runs_every_command_the_readme_shows(tmp_path: Path, live_server) -> None:  # type: ignore[no-untyped-def]
    text = (ROOT / "README.md").read_text()
    by_kind: dict[str, list[str]] = {}
    for command in readme_commands(text):
        by_kind.setdefault(_kind(command), []).append(command)
    checked = {
        "models load", "models list", "models disable",
        "apitoken create", "apitoken list", "apitoken revoke",
        "curl", "ratings",
    }  # fmt: skip
    unknown = set(by_kind) - checked - INTERACTIVE - TRAINING
    assert not unknown, f"the README shows commands this test does not check: {unknown}"
    assert checked <= set(by_kind), f"the README lost commands: {checked - set(by_kind)}"
    shell = Shell(tmp_path / "work", _make_env_exports(tmp_path / "data"))
    assert shell.env["DJANGO_SECRET_KEY"] != os.environ.get("DJANGO_SECRET_KEY")

    # The models file is the README's own YAML example.
    _, yaml_lines = next(b for b in _fenced_blocks(text) if b[0] == "yaml")
    (load,) = by_kind["models load"]
    (shell.folder / load.split()[-1]).write_text("\n".join(yaml_lines) + "\n")
    assert "loaded 2 model(s)" in shell.run(load).stdout
    listed = {m.name: m for m in Model.objects.prefetch_related("endpoints")}
    assert {"llama-3-8b", "hosted-model"} <= set(listed)
    assert listed["llama-3-8b"].endpoints.count() == 2
    assert listed["hosted-model"].endpoints.get().api_key_env == "LUDUS_KEY_EXAMPLE"
    for command in by_kind["models list"]:
        for variant in variants(command):
            out = shell.run(variant).stdout
            if "--format json" in variant:
                assert {"llama-3-8b", "hosted-model"} <= {m["name"] for m in json.loads(out)}
            else:
                assert "llama-3-8b" in out and "hosted-model" in out
    for command in by_kind["models disable"]:
        shell.run(command)
        assert not Model.objects.get(name=command.split()[-1]).enabled

    # Votes between the loaded models and a third, published as the beat task publishes them.
    third = Model.objects.create(name="zeta-chat", served_name="fake")
    Endpoint.objects.create(model=third, base_url="http://127.0.0.1:9/v1")
    simulate_votes([*Model.objects.filter(name__in=["llama-3-8b", "hosted-model"]), third], 30)
    from arena.tasks import refresh_leaderboard

    snapshot_id = str(refresh_leaderboard())

    User.objects.create_user("lab")
    (create,) = by_kind["apitoken create"]
    raw = shell.run(_fill(create, USER="lab", NAME="laptop")).stdout.strip()
    token = ApiToken.objects.get(user__username="lab", name="laptop")
    for command in by_kind["apitoken list"]:
        assert f"{token.id}\tlab\t" in shell.run(command).stdout

    (curl,) = by_kind["curl"]
    curl = _fill(curl, ID=snapshot_id).replace("http://127.0.0.1:8000", live_server.url)
    download = shell.run(curl, LUDUS_TOKEN=raw)
    battles = shell.folder / "battles.jsonl"
    if not battles.exists():  # a curl line without -o prints the log
        battles.write_text(download.stdout)
    assert len(battles.read_text().splitlines()) == 30

    for command in by_kind["ratings"]:
        for variant in variants(_fill(command, C="coding")):
            out = shell.run(variant).stdout
            assert "zeta-chat" in out and "hosted-model" in out, variant

    assert set(by_kind) >= TRAINING, f"the README lost commands: {TRAINING - set(by_kind)}"
    for kind in sorted(TRAINING):
        for command in by_kind[kind]:
            words = command.split("manage.py ", 1)[1].split()
            if words[:2] == ["finetune", "list"]:
                assert shell.run(command).stdout == ""  # no job yet
                continue
            named = " ".join(words[:2] if kind == "finetune" else words[:1])
            usage = shell.run(f".venv/bin/python manage.py {named} --help").stdout
            for option in [w.split("=")[0] for w in words[1:] if w.startswith("--")]:
                assert option in usage, f"`{command}`: {option} is not in `{named} --help`"

    (revoke,) = by_kind["apitoken revoke"]
    shell.run(_fill(revoke, ID=str(token.id)))
    assert not ApiToken.objects.filter(id=token.id).exists()
    export_url = re.search(r"http://\S+", curl)
    assert export_url is not None
    request = urllib.request.Request(
        export_url.group(0), headers={"Authorization": f"Bearer {raw}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
