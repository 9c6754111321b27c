"""Issue 20: credentials are masked wherever a -v makes them visible (Docker backend).

A fake home holds every entry of containers.hostview.CREDENTIALS (a secret in each) and, next
to each, a plain file. The run mounts every parent directory of the entries that -v accepts
(~/.config, ~/.config/gh, ~/.claude, ~/.azure, ...) and the directory that holds the home; the
command reads everything back: each credential reads empty (a file) or lists nothing (a
directory), each plain file next to one reads its content. `-v $HOME/.config:$HOME/.config:ro`
and `-v ~/.claude:~/.claude:ro`, the two reports, are mounted as given.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys

import pytest

from containers.hostview import CREDENTIALS, SECRET_STORES, Kind
from tests.support.needs import need_docker, need_root

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

Outcome = tuple[dict[str, object], list[tuple[str, str]]]  # results, (path, what it must read)

READ = r'''
import json, os, sys
def read(path):
    try:
        if os.path.isdir(path):
            return {"dir": sorted(os.listdir(path))}
        with open(path) as f:
            return f.read()
    except OSError as e:
        return type(e).__name__
print("PROBES " + json.dumps({p: read(p) for p in json.loads(sys.argv[1])}))
'''


def _parents() -> list[str]:
    out: set[str] = set()
    for cred in CREDENTIALS:
        parts = cred.path.split("/")
        for k in range(1, len(parts)):
            if not any(name in SECRET_STORES for name in parts[:k]):
                out.add("/".join(parts[:k]))
    return sorted(out)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The probes' results, and the (path in the sandbox, what it must read) expectations."""
    need_docker()
    need_root()
    top = tmp_path_factory.mktemp("creds")
    home, ws = top / "home", top / "ws"
    ws.mkdir()
    for cred in CREDENTIALS:
        path = home / cred.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if cred.kind is Kind.FILE:
            path.write_text(f"SECRET {cred.path}\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "token").write_text("SECRET dir\n")
        (path.parent / "awf-sibling.txt").write_text("visible\n")
    for p in [top, *top.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    (ws / "read.py").write_text(READ)

    volumes: list[str] = []
    expect: list[tuple[str, str]] = []  # (path inside, "" | "empty-dir" | "visible")

    def mounted(source: str, target: str) -> None:
        volumes.extend(["-v", f"{source}:{target}:ro"])
        for cred in CREDENTIALS:
            full = f"{home}/{cred.path}"
            if not full.startswith(source + "/"):
                continue
            inside = target + full[len(source):]
            expect.append((inside, "" if cred.kind is Kind.FILE else "empty-dir"))
            expect.append((posixpath.dirname(inside) + "/awf-sibling.txt", "visible"))

    for i, parent in enumerate(_parents()):
        mounted(f"{home}/{parent}", f"/m/{i}")
    mounted(str(top), "/top")  # the home lies below it
    mounted(f"{home}/.config", f"{home}/.config")  # the reports, as given
    mounted(f"{home}/.claude", f"{home}/.claude")
    paths = sorted({p for p, _ in expect})
    env = {**os.environ, "HOME": str(home)}
    env.pop("GITHUB_WORKSPACE", None)
    done = subprocess.run(
        [sys.executable, "-m", "awf.cli", "run", "--backend", "docker", "--allow-domains",
         "allowed.test", *volumes, "--", "python3", f"{ws}/read.py", json.dumps(paths)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ws, env=env)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"no probe output; exit {done.returncode}; stderr: {done.stderr[-3000:]}"
    return json.loads(line[len("PROBES "):]), expect


def test_every_credential_reads_empty_under_any_mounted_parent(
        run: Outcome) -> None:
    got, expect = run
    leaked = {p: got[p] for p, want in expect if want == "" and got[p] != ""}
    assert leaked == {}
    leaked_dirs = {p: got[p] for p, want in expect
                   if want == "empty-dir" and got[p] != {"dir": []}}
    assert leaked_dirs == {}


def test_the_files_next_to_them_stay_readable(
        run: Outcome) -> None:
    got, expect = run
    hidden = {p: got[p] for p, want in expect if want == "visible" and got[p] != "visible\n"}
    assert hidden == {}


def test_the_two_reports(run: Outcome) -> None:
    got, expect = run
    paths = {p for p, _ in expect}
    gh = next(p for p in paths if p.endswith("/.config/gh/hosts.yml") and p.startswith("/tmp"))
    claude = next(p for p in paths if p.endswith("/.claude/.credentials.json")
                  and p.startswith("/tmp"))
    assert got[gh] == ""
    assert got[claude] == ""
