"""The agent's PATH finds the toolchains chroot host mode mounts from $HOME (cargo, rustc, pipx's
commands), after the system's directories."""

from __future__ import annotations

from containers import agentenv, hostview


def _path(home: str) -> list[str]:
    env = dict(agentenv.agent_env({"PATH": "/evil"}, proxy_url=None, no_proxy="", home=home,
                                  env_all=True, exclude=(), env_file=(), explicit=()))
    return env["PATH"].split(":")


def test_home_toolchains_are_on_path_after_the_system() -> None:
    path = _path("/home/dev")
    assert path[:6] == agentenv.AGENT_PATH.split(":")
    assert path[6:] == ["/home/dev/.cargo/bin", "/home/dev/.local/bin"]
    assert "/evil" not in path  # the caller's PATH is never passed


def test_every_dir_on_path_is_a_mounted_toolchain() -> None:
    assert set(agentenv.HOME_TOOL_DIRS) <= set(hostview.TOOLCHAINS)


def test_an_explicit_path_still_wins() -> None:
    env = dict(agentenv.agent_env({}, proxy_url=None, no_proxy="", home="/root", env_all=False,
                                  exclude=(), env_file=(), explicit=(("PATH", "/opt/bin"),)))
    assert env["PATH"] == "/opt/bin"
