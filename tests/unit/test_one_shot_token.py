"""The one-shot-token library, loaded for real: a protected variable is served once per process.

Each test compiles the library and a small C probe, then runs the probe with LD_PRELOAD and a
controlled environment. The probe prints `key=value` lines (a bare `key` is NULL) and hex dumps
of its own /proc/self/environ, so the assertions see what an attacker in the process would.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from containers.oneshot_build import SOURCE, compile_one_shot

TOKEN = "ghp_0neSh0tT0kenV@lue#$%_do_not_leak"

PROBE_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void show(const char *key, const char *value)
{
    if (value) printf("%s=%s\n", key, value); else printf("%s\n", key);
    fflush(stdout);
}

static void dump_environ(const char *key)  /* /proc/self/environ, hex-encoded */
{
    FILE *f = fopen("/proc/self/environ", "rb");
    int c;
    printf("%s=", key);
    while (f && (c = fgetc(f)) != EOF) printf("%02x", c);
    printf("\n");
    fflush(stdout);
    if (f) fclose(f);
}

static void run(char *const argv[])  /* fork and exec with the current environ, then wait */
{
    pid_t pid = fork();
    if (pid == 0) { execve(argv[0], argv, environ); _exit(127); }
    int status;
    waitpid(pid, &status, 0);
}

static const char *shared_name;
static pthread_barrier_t start;
static const char *seen[8];

static void *reader(void *arg)
{
    pthread_barrier_wait(&start);
    seen[(long)arg] = getenv(shared_name);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argv[1], *name = argv[2];
    if (argc < 3) return 2;
    if (!strcmp(mode, "twice")) {            /* getenv twice */
        show("first", getenv(name));
        show("second", getenv(name));
    } else if (!strcmp(mode, "secure")) {    /* secure_getenv, then getenv */
        show("first", secure_getenv(name));
        show("second", getenv(name));
        show("third", secure_getenv(name));
    } else if (!strcmp(mode, "environ")) {   /* /proc/self/environ before and after */
        dump_environ("before");
        show("first", getenv(name));
        dump_environ("after");
        show("second", getenv(name));
    } else if (!strcmp(mode, "env")) {       /* argv[3]: "1" to call getenv first; then env */
        if (!strcmp(argv[3], "1")) show("first", getenv(name));
        char *args[] = {"/usr/bin/env", NULL};
        run(args);
        show("after", getenv(name));
    } else if (!strcmp(mode, "spawn")) {     /* getenv, then a child probe with the library */
        show("first", getenv(name));
        char *args[] = {argv[0], "child", (char *)name, NULL};
        run(args);
        show("after", getenv(name));
    } else if (!strcmp(mode, "child")) {
        show("child", getenv(name));
        show("child_again", getenv(name));
    } else if (!strcmp(mode, "threads")) {   /* 8 threads race for the first getenv */
        pthread_t t[8];
        shared_name = name;
        pthread_barrier_init(&start, NULL, 8);
        for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, reader, (void *)i);
        for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < 8; i++) {
            char key[16];
            snprintf(key, sizeof key, "t%d", i);
            show(key, seen[i]);
        }
        show("same_pointer", seen[0] && seen[0] == seen[7] ? "1" : "0");
    } else {
        return 2;
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(library, probe), compiled once for the module with the real build function."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: the one-shot library and its probe need a C compiler")
    d = tmp_path_factory.mktemp("oneshot")
    library = d / "one_shot_token.so"
    compile_one_shot(SOURCE, library)
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run([gcc, "-O1", "-Wall", "-o", str(d / "probe"), str(d / "probe.c"), "-pthread"],
                   check=True, capture_output=True, timeout=120)
    return library, d / "probe"


def run_probe(built: tuple[Path, Path], *args: str, preload: bool = True,
              **env: str) -> tuple[dict[str, str | None], list[str]]:
    """Run the probe with only `env` (plus LD_PRELOAD); its `key=value` lines and raw lines."""
    library, probe = built
    full = {"PATH": "/usr/bin:/bin", **env}
    if preload:
        full["LD_PRELOAD"] = str(library)
    done = subprocess.run([str(probe), *args], env=full, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done
    assert done.stderr == ""  # the library never prints, least of all a value
    lines = done.stdout.splitlines()
    out: dict[str, str | None] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        out.setdefault(key, value if sep else None)
    return out, lines


def environ_text(hex_dump: str | None) -> str:
    assert hex_dump is not None
    return bytes.fromhex(hex_dump).decode(errors="replace")


def test_first_getenv_serves_the_value_and_later_calls_the_cached_copy(built) -> None:
    out, _ = run_probe(built, "twice", "GITHUB_TOKEN", GITHUB_TOKEN=TOKEN)
    assert out == {"first": TOKEN, "second": TOKEN}


def test_secure_getenv_consumes_and_shares_the_same_cache(built) -> None:
    out, _ = run_probe(built, "secure", "OPENAI_API_KEY", OPENAI_API_KEY=TOKEN)
    assert out == {"first": TOKEN, "second": TOKEN, "third": TOKEN}


def test_token_leaves_proc_self_environ_after_the_first_call(built) -> None:
    out, _ = run_probe(built, "environ", "GITHUB_TOKEN", GITHUB_TOKEN=TOKEN, KEEP="visible")
    assert TOKEN in environ_text(out["before"])  # the check below is not vacuous
    after = environ_text(out["after"])
    assert TOKEN not in after
    assert "KEEP=visible" in after  # only the protected value is touched
    assert out["first"] == out["second"] == TOKEN


def test_a_program_run_after_the_first_call_inherits_nothing(built) -> None:
    _, control = run_probe(built, "env", "GH_TOKEN", "0", GH_TOKEN=TOKEN)
    assert f"GH_TOKEN={TOKEN}" in control  # without a getenv first, env(1) would see it
    out, lines = run_probe(built, "env", "GH_TOKEN", "1", GH_TOKEN=TOKEN, KEEP="visible")
    assert out["first"] == out["after"] == TOKEN
    children = [line for line in lines if not line.startswith(("first=", "after="))]
    assert "KEEP=visible" in children
    assert not any(line.startswith("GH_TOKEN") or TOKEN in line for line in children)


def test_a_later_process_with_the_library_gets_nothing_while_the_first_keeps_its_copy(
        built) -> None:
    out, _ = run_probe(built, "spawn", "ANTHROPIC_API_KEY", ANTHROPIC_API_KEY=TOKEN)
    assert out == {"first": TOKEN, "child": None, "child_again": None, "after": TOKEN}


def test_non_protected_variables_pass_through_repeatedly_and_are_inherited(built) -> None:
    out, _ = run_probe(built, "twice", "NORMAL_VAR", NORMAL_VAR="plain")
    assert out == {"first": "plain", "second": "plain"}
    out, _ = run_probe(built, "spawn", "NORMAL_VAR", NORMAL_VAR="plain")
    assert out == {"first": "plain", "child": "plain", "child_again": "plain", "after": "plain"}
    out, _ = run_probe(built, "environ", "NORMAL_VAR", NORMAL_VAR="plain")
    assert "NORMAL_VAR=plain" in environ_text(out["after"])


def test_names_in_awf_one_shot_tokens_are_protected_too(built) -> None:
    listed = "OTHER_ONE, MY_SECRET ,LAST"  # spaces around names are ignored
    out, _ = run_probe(built, "spawn", "MY_SECRET", AWF_ONE_SHOT_TOKENS=listed, MY_SECRET=TOKEN)
    assert out == {"first": TOKEN, "child": None, "child_again": None, "after": TOKEN}
    out, _ = run_probe(built, "environ", "MY_SECRET", AWF_ONE_SHOT_TOKENS=listed,
                       MY_SECRET=TOKEN)
    assert TOKEN not in environ_text(out["after"])
    # a name that merely contains a listed one is not protected
    out, _ = run_probe(built, "spawn", "MY_SECRET_2", AWF_ONE_SHOT_TOKENS="MY_SECRET",
                       MY_SECRET_2="plain")
    assert out["child"] == "plain"


def test_without_the_library_nothing_is_protected(built) -> None:
    out, _ = run_probe(built, "spawn", "GITHUB_TOKEN", preload=False, GITHUB_TOKEN=TOKEN)
    assert out["child"] == TOKEN  # so the tests above measure the library, not the probe


def test_eight_threads_racing_all_get_the_same_copy(built) -> None:
    for _ in range(20):  # the race is short; repeat it
        out, _ = run_probe(built, "threads", "COPILOT_GITHUB_TOKEN", COPILOT_GITHUB_TOKEN=TOKEN)
        assert [out[f"t{i}"] for i in range(8)] == [TOKEN] * 8
        assert out["same_pointer"] == "1"


@pytest.mark.parametrize("value", ["", "x" * 20_000, "a=b,c d\t€"])
def test_edge_values_are_served_and_cached_as_they_are(built, value: str) -> None:
    out, _ = run_probe(built, "spawn", "GEMINI_API_KEY", GEMINI_API_KEY=value)
    assert out == {"first": value, "child": None, "child_again": None, "after": value}


def test_an_unset_protected_name_is_null_every_time(built) -> None:
    out, _ = run_probe(built, "twice", "GITHUB_PAT")
    assert out == {"first": None, "second": None}


def test_a_broken_compiler_is_a_runtime_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared; }\n")
    with pytest.raises(RuntimeError, match="cannot compile"):
        compile_one_shot(bad, tmp_path / "bad.so")
    with pytest.raises(RuntimeError, match="cannot compile"):
        compile_one_shot(SOURCE, tmp_path / "x.so", cc=str(tmp_path / "no-such-cc"))
