"""Finding a run's logs and reading them: the I/O edge of `awf logs`.

**Where logs are.** `awf run` writes each run's logs to `--proxy-logs-dir`, or else
`$TMPDIR/awf-logs-<run>` (`awf.run.logs_dir`). A run is **running** when:

* its `run.json` names a live `pid` and no `exit_code` yet (a run record written at the start), or
* it has no `run.json` (the backends write it at the end) and its owner is alive: the netns
  backend's `/run/awf/runs/<run>.pid` (`awf.leftovers`), or the Docker backend's containers
  labelled `io.awf.run=<run>` with a live `io.awf.owner-pid` on this host (their
  `io.awf.logs-dir` label also finds runs with a `--proxy-logs-dir`).

A run with `run.json` and an `exit_code` is finished; one with neither `run.json` nor a live
owner is `unfinished` (killed). Sources are listed running first, then newest first.

**Reading.** Files are streamed line by line (bounded memory). A line that is not a JSON object
is skipped; the first such line of each file gets one warning naming the file and the line
number, and the others are counted (`Reader.malformed`). The count of an access log
(`tally_access`) reads blocks of whole lines instead, a big file split into byte ranges among
processes, and decodes most lines into only the fields it needs (`Tally.add_lines`).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.errors import AwfError

if TYPE_CHECKING:
    from awf.logs.stats import Counts

RUNS = Path("/run/awf/runs")  # awf.leftovers.RUNS: the netns backend's live runs
PREFIX = "awf-logs-"
ACCESS = "access.jsonl"
DNS = "dns.jsonl"
DROPS = "l3-drops.json"
RUN_JSON = "run.json"



def _fast() -> Callable[[bytes], Any]:
    """orjson's loads: several times faster than json's on big logs; json's is the fallback for
    what it refuses (lone surrogates, NaN, huge integers)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency
        return json.loads
    return orjson.loads


_fast_loads = _fast()


class NoLogs(AwfError):
    """No source to read: exit 1 with one line."""

    exit_code = 1


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """One JSON object, or None when the line is not one."""
    try:
        obj = _fast_loads(raw)
    except ValueError:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deep for json
            return None
    return obj if isinstance(obj, dict) else None


def warn(msg: str) -> None:
    print(f"awf logs: warning: {msg}", file=sys.stderr, flush=True)


@dataclass
class Reader:
    """Reads JSON-lines files, skipping malformed lines: one warning per file, the rest
    counted."""

    warn: Callable[[str], None] = warn
    malformed: int = 0
    _warned: set[str] = field(default_factory=set)

    def bad_line(self, path: Path, lineno: int) -> None:
        self.malformed += 1
        if str(path) not in self._warned:
            self._warned.add(str(path))
            self.warn(f"{path}: line {lineno} is not a JSON object; skipped")

    def records(self, path: Path, *, raw: bool = False) -> Iterator[tuple[dict[str, Any], bytes]]:
        """(record, line) for each good line of `path`; nothing when it does not exist."""
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise NoLogs(f"cannot read {path}: {exc.strerror}") from exc
        with f:
            for lineno, line in enumerate(f, 1):
                rec = parse_line(line)
                if rec is None:
                    if line.strip():
                        self.bad_line(path, lineno)
                    continue
                yield rec, line

    def follow(self, path: Path, running: Callable[[], bool], *, poll: float = 0.2,
               sleep: Callable[[float], None] = time.sleep,
               ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every record of `path`, then each new one as it is written, until `running()` is false
        (then what is left is read once more). Only whole lines are read; a file truncated
        back (a failed write) is followed from its new end."""
        offset, lineno, partial = 0, 0, b""
        idle = 0.0
        while True:
            data = b""
            try:
                with path.open("rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < offset:
                        offset, partial = size, b""
                    f.seek(offset)
                    data = f.read(1 << 20)
                    offset += len(data)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise NoLogs(f"cannot read {path}: {exc.strerror}") from exc
            if data:
                idle = 0.0
                chunk = partial + data
                *lines, partial = chunk.split(b"\n")
                for line in lines:
                    lineno += 1
                    rec = parse_line(line)
                    if rec is None:
                        if line.strip():
                            self.bad_line(path, lineno)
                        continue
                    yield rec, line + b"\n"
                continue
            if idle == 0.0 or idle >= 0.5:
                idle = 0.0
                if not running():
                    if self._drained(path, offset):
                        if partial.strip():
                            rec = parse_line(partial)
                            if rec is None:
                                self.bad_line(path, lineno + 1)
                            else:
                                yield rec, partial + b"\n"
                        return
                    continue
            sleep(poll)
            idle += poll

    @staticmethod
    def _drained(path: Path, offset: int) -> bool:
        try:
            return path.stat().st_size <= offset
        except OSError:
            return True


# --- runs ----------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """A live process (a zombie is not: it has exited)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:][:1] != "Z"
    except OSError:
        return True


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Run:
    """One logs directory and what is known of its run."""

    path: Path
    id: str
    state: str = "unfinished"  # running | finished | unfinished
    exit_code: int | None = None
    pid: int | None = None  # the live owner, when known
    doc: dict[str, Any] = field(default_factory=dict)  # run.json

    @property
    def mtime(self) -> float:
        times = []
        for name in (ACCESS, DNS, RUN_JSON, ""):
            try:
                times.append((self.path / name).stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    def is_running(self) -> bool:
        """Asked again (for -f): has the run ended since? (Its owner exited, or run.json now has
        its exit code.)"""
        doc = read_json(self.path / RUN_JSON)
        if isinstance(doc, dict) and (doc.get("exit_code") is not None
                                      or doc.get("ended") is not None):
            return False
        if self.pid is not None:
            return pid_alive(self.pid)
        return run_state(self.path, self.id, docker=False)[0] == "running"

    @property
    def api_proxy(self) -> frozenset[str]:
        """The API-proxy sidecar's addresses (.30 of the run's internal subnet, by analogy with
        the proxy's .10 and the agent's .20), from run.json's `subnets`."""
        import ipaddress

        subnets = self.doc.get("subnets")
        out: set[str] = set()
        if isinstance(subnets, dict):
            for key, offset in (("v4", 30), ("v6", 0x30)):
                try:
                    net = ipaddress.ip_network(str(subnets.get(key)))
                except ValueError:
                    continue
                out.add(str(net.network_address + offset))
        return frozenset(out)


def run_state(path: Path, run_id: str, *, docker: bool = True,
              docker_live: dict[str, int] | None = None) -> tuple[str, int | None, dict[str, Any]]:
    """(state, live owner pid, run.json) of the logs directory `path`."""
    doc = read_json(path / RUN_JSON)
    doc = doc if isinstance(doc, dict) else {}
    pid = doc.get("pid")
    if doc:
        finished = doc.get("exit_code") is not None or doc.get("ended") is not None
        if finished:
            return "finished", None, doc
        host = doc.get("host")
        if (isinstance(pid, int) and not isinstance(pid, bool) and pid_alive(pid)
                and (host is None or host == socket.gethostname())):
            return "running", pid, doc
        if "pid" in doc or "exit_code" in doc:
            return "unfinished", None, doc
    run = doc.get("id") if isinstance(doc.get("id"), str) else run_id
    try:
        owner = int((RUNS / f"{run}.pid").read_text())
    except (OSError, ValueError):
        owner = 0
    if owner and pid_alive(owner):
        return "running", owner, doc
    if docker_live is None and docker:
        docker_live = docker_runs()
    for key in (os.path.realpath(path), run):
        if docker_live and key in docker_live:
            return "running", docker_live[key], doc
    return ("finished" if doc else "unfinished"), None, doc


def _run_id(doc: dict[str, Any], default: str) -> str:
    rid = doc.get("id")
    return rid if isinstance(rid, str) else default


def docker_runs() -> dict[str, int]:
    """Live Docker runs on this host: run id and logs dir -> owner pid. Empty when no engine is
    reachable by this user (or AWF_LOGS_DOCKER=0)."""
    if os.environ.get("AWF_LOGS_DOCKER", "1") == "0":
        return {}
    sock = "/var/run/docker.sock"
    if not os.environ.get("DOCKER_HOST") and not os.access(sock, os.R_OK | os.W_OK):
        return {}
    try:
        from containers import labels
        from containers.driver import DockerDriver

        driver = DockerDriver.from_env(timeout=5)
    except Exception:  # no engine, no permission: no Docker runs
        return {}
    out: dict[str, int] = {}
    try:
        found = driver.list_by_label(labels.RUN)
        host = socket.gethostname()
        for obj in found.containers:
            run, pid = obj.label(labels.RUN), obj.label(labels.OWNER_PID)
            if (run is None or obj.label(labels.TEST) is not None or obj.label(labels.HOST) != host
                    or pid is None or not pid.isdigit() or not pid_alive(int(pid))):
                continue
            out[run] = int(pid)
            logs = obj.label(labels.LOGS_DIR)
            if logs:
                out[os.path.realpath(logs)] = int(pid)
    except Exception:
        return {}
    finally:
        try:
            driver.close()
        except Exception:
            pass
    return out


def search_dirs() -> list[Path]:
    """Where `awf run` puts logs by default: $TMPDIR (awf.run.logs_dir uses
    tempfile.gettempdir()). The first of $TMPDIR, $TEMP, $TMP that is a directory counts even
    when this user cannot write to it (gettempdir() would skip it): reading needs no write."""
    for var in ("TMPDIR", "TEMP", "TMP"):
        value = os.environ.get(var)
        if value and os.path.isdir(value):
            return [Path(value)]
    return [Path(tempfile.gettempdir())]


def find_runs(dirs: list[Path] | None = None, *, docker: bool = True) -> list[Run]:
    """Every logs directory found: running first, then newest first."""
    dirs = search_dirs() if dirs is None else dirs
    live = docker_runs() if docker else {}
    paths: dict[str, tuple[Path, str]] = {}
    for d in dirs:
        try:
            entries = list(d.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.name.startswith(PREFIX) and p.is_dir():
                paths[os.path.realpath(p)] = (p, p.name[len(PREFIX):])
    for key in live:  # --proxy-logs-dir of live Docker runs
        if key.startswith("/") and key not in paths and Path(key).is_dir():
            paths[key] = (Path(key), Path(key).name.removeprefix(PREFIX))
    runs = []
    for p, run_id in paths.values():
        state, pid, doc = run_state(p, run_id, docker_live=live)
        rid = _run_id(doc, run_id)
        code = doc.get("exit_code")
        runs.append(Run(p, rid, state, code if isinstance(code, int) else None, pid, doc))
    runs.sort(key=lambda r: (r.state != "running", -r.mtime))
    return runs


@dataclass
class Source:
    """What to read: a run's directory, or one file."""

    label: str
    access: Path | None = None
    dns: Path | None = None
    drops: Path | None = None
    run: Run | None = None

    def is_running(self) -> bool | None:
        """True/False for a run; None when nothing says (a file or a bare directory)."""
        return None if self.run is None else self.run.is_running()


def dir_source(path: Path, run: Run | None = None, *, docker: bool = True) -> Source:
    if run is None:
        name = path.name.removeprefix(PREFIX)
        state, pid, doc = run_state(path, name, docker=docker)
        if doc or state == "running" or path.name.startswith(PREFIX):
            rid = _run_id(doc, name)
            code = doc.get("exit_code")
            run = Run(path, rid, state, code if isinstance(code, int) else None, pid, doc)
    return Source(str(path), path / ACCESS, path / DNS, path / DROPS, run)


def file_source(path: Path) -> Source:
    if path.name == DROPS or path.suffix == ".json":
        return Source(str(path), drops=path)
    if path.name == DNS or _looks_like_dns(path):
        return Source(str(path), dns=path)
    return Source(str(path), access=path)


def _looks_like_dns(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            for line in f:
                rec = parse_line(line)
                if rec is not None:
                    return "qname" in rec
    except OSError:
        pass
    return False


def resolve(source: str | None, *, dirs: list[Path] | None = None, docker: bool = True) -> Source:
    """`--source RUN|DIR|FILE|running`, or the default: the running run, else the newest."""
    where = ", ".join(str(d / (PREFIX + "*")) for d in (search_dirs() if dirs is None else dirs))
    if source not in (None, "running"):
        p = Path(source)
        if p.is_dir():
            return dir_source(p, docker=docker)
        if p.is_file():
            return file_source(p)
        if os.sep in source or source.startswith("."):
            raise NoLogs(f"no such file or directory: {source}")
    runs = find_runs(dirs, docker=docker)
    if source == "running":
        runs = [r for r in runs if r.state == "running"]
        if not runs:
            raise NoLogs(f"no running awf run (looked in {where}, {RUNS} and Docker's labels)")
    elif source is not None:
        runs = [r for r in runs if r.id == source or r.id.startswith(source)
                or r.path.name == source]
        if not runs:
            raise NoLogs(f"no run {source!r} (looked in {where}); try --source DIR")
    if not runs:
        raise NoLogs(f"no awf logs found (looked for running runs and in {where}); "
                     "use --source DIR or FILE")
    return dir_source(runs[0].path, runs[0])


def load_drops(path: Path | None) -> object:
    return None if path is None else read_json(path)


# --- stats over big files ------------------------------------------------------------------

PARALLEL_FROM = 64 << 20  # files at least this big are split among processes
CHUNK = 4 << 20  # bytes read at a time (a block's lines are split in C)


def _ranged_blocks(f: Any, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The lines that begin in [start, end) of the open file `f`, in blocks of about `chunk`
    bytes. Each block holds whole lines and ends with a newline, except the file's last line
    when it has none; a line longer than `chunk` makes a block of its own size."""
    if start:
        f.seek(start - 1)
        if f.read(1) != b"\n":
            f.readline()  # the line that began before start is the previous range's
    pos = f.tell()
    held: list[bytes] = []  # the start of a line that has not ended yet
    while pos < end:
        data = f.read(min(chunk, end - pos))
        if not data:
            break
        pos += len(data)
        if pos >= end and not data.endswith(b"\n"):
            data += f.readline()  # finish the line that began before end
        cut = data.rfind(b"\n") + 1
        if not cut:
            held.append(data)
            continue
        block = data if cut == len(data) else data[:cut]
        if held:
            held.append(block)
            block = b"".join(held)
            held = []
        if cut < len(data):
            held.append(data[cut:])
        yield block
    if held:
        yield b"".join(held)  # the last line has no newline


def _utf8(block: bytes) -> bool:
    try:
        block.decode()
    except UnicodeDecodeError:
        return False
    return True


def _tally_range(path: str, start: int, end: int, api_proxy: frozenset[str],
                 chunk: int = CHUNK) -> tuple[tuple[object, ...], int, int, int]:
    """Tally the whole lines that begin in [start, end): (state, lines, first bad line (local,
    0 if none), bad lines). Lines are decoded by `Tally.add_lines`: as `stats.ProxyFields`
    where the block is valid UTF-8 (msgspec does not check the fields it skips, where orjson and
    json refuse bad UTF-8 anywhere), else as `parse_line` reads them."""
    from awf.logs.stats import ProxyFields, Tally

    tally = Tally(api_proxy)
    decode = msgspec.json.Decoder(ProxyFields).decode
    lines = first_bad = bad = 0
    with open(path, "rb") as f:
        for block in _ranged_blocks(f, start, end, chunk):
            part = block.split(b"\n")
            if block.endswith(b"\n"):
                part.pop()
            utf8 = block.isascii() or _utf8(block)
            skipped = tally.add_lines(part, parse_line, decode if utf8 else None)
            if skipped:
                bad += len(skipped)
                first_bad = first_bad or lines + skipped[0] + 1
            lines += len(part)
    return tally.state(), lines, first_bad, bad


def tally_access(path: Path, tally: Any, reader: Reader, *, workers: int | None = None,
                 chunk: int = CHUNK, processes: bool = True) -> None:
    """Feed every record of the access log `path` into `tally` (a `stats.Tally`), streaming
    `chunk` bytes at a time; a big file is split into `workers` byte ranges (default: one per
    CPU we may use, at most 4), each tallied by a process of its own (or one after the other
    in this one when not `processes`) and merged in file order; a malformed line is reported
    with its line number in the whole file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise NoLogs(f"cannot read {path}: {exc.strerror}") from exc
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0))) if size >= PARALLEL_FROM else 1
    bounds = [size * i // workers for i in range(workers + 1)]
    ranges = list(itertools.pairwise(bounds))
    try:
        parts = None
        if workers > 1 and processes:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            try:
                with ProcessPoolExecutor(workers,
                                         mp_context=multiprocessing.get_context("fork")) as ex:
                    parts = list(ex.map(_tally_range, [str(path)] * workers,
                                        [a for a, _ in ranges], [b for _, b in ranges],
                                        [tally.api_proxy] * workers, [chunk] * workers))
            except BrokenProcessPool:  # a worker died (killed, out of memory): do it here
                parts = None
        if parts is None:
            parts = [_tally_range(str(path), a, b, tally.api_proxy, chunk) for a, b in ranges]
    except OSError as exc:
        raise NoLogs(f"cannot read {path}: {exc.strerror}") from exc
    before = 0
    for state, lines, first_bad, bad in parts:
        tally.merge(state)
        if bad:
            reader.bad_line(path, before + first_bad)
            reader.malformed += bad - 1
        before += lines


def load_counts(source: Source, reader: Reader | None = None, *,
                workers: int | None = None) -> Counts:
    """The `stats.Counts` of a source: its access log, DNS log and network-layer drops.
    `workers`: see `tally_access`."""
    from awf.logs.stats import Tally

    reader = reader or Reader()
    tally = Tally(source.run.api_proxy if source.run is not None else frozenset())
    if source.access is not None:
        tally_access(source.access, tally, reader, workers=workers)
    if source.dns is not None:
        for rec, _ in reader.records(source.dns):
            tally.add_dns(rec)
    if source.drops is not None:
        tally.add_drops(load_drops(source.drops))
    counts = tally.result()
    counts.malformed = reader.malformed
    return counts


def count_dir(logs: Path, reader: Reader | None = None) -> Counts:
    """The true count of a finished run's logs directory, for the post-run summary: in this
    process only (awf may still have threads then, and forking a threaded process is unsafe),
    never asking Docker. Malformed lines are counted (`Counts.malformed`); `reader` decides
    how they are reported (by default one `awf logs: warning:` line per file)."""
    return load_counts(dir_source(logs, docker=False), reader, workers=1)
