"""awf-netfilter's argument handling and exit codes (the nft paths run in the privileged
tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netfilter.cli import main
from netfilter.ruleset import AgentRuleset, ruleset_from_spec

SPEC = {"kind": "agent", "table": "awf", "proxy_v4": "10.213.0.1", "proxy_v6": "fd61:7766:1::1",
        "proxy_ports": [3128, 53], "tcp_ports": [80, 443]}


def test_dump_spec_prints_the_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    assert main(["dump", "--spec", str(path)]) == 0
    ruleset = ruleset_from_spec(SPEC)
    assert isinstance(ruleset, AgentRuleset)
    assert capsys.readouterr().out == ruleset.render()


@pytest.mark.parametrize("argv", [[], ["bogus"], ["apply"], ["remove"],
                                  ["dump", "--spec", "a", "--table", "b"]])
def test_usage_errors_exit_2_with_one_line(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("awf-netfilter: "), err


def test_bad_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, "tcp_ports": [0]}))
    assert main(["dump", "--spec", str(path)]) == 2
    assert "port 0" in capsys.readouterr().err
    assert main(["dump", "--spec", str(tmp_path / "missing.json")]) == 2
    path.write_text("{not json")
    assert main(["verify", "--spec", str(path)]) == 2


def test_missing_namespace_exits_125(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    assert main(["verify", "--spec", str(path), "--netns", "awf-no-such-netns"]) == 125
    assert "does not exist" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "apply" in capsys.readouterr().out
