"""Turn raw samples into per-case metrics, target verdicts and RESULTS.md (all pure functions).

A metric is computed per repetition, then summarised as the median with the range (min-max).
The ratio column is awf-proxy's median over Squid's median for the same metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import percentile, spread

AWF = "awf-proxy"
SQUID = "squid"
PROXIES = (SQUID, AWF)

TIMES = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash

SampleDict = Mapping[str, Any]
MetricFn = Callable[[SampleDict], float | None]


def _per_unit_us(s: SampleDict) -> float | None:
    return float(s["proxy_cpu_s"]) * 1e6 / s["units"] if s["units"] else None


def _rate(s: SampleDict) -> float | None:
    return s["units"] / s["elapsed_s"] if s["elapsed_s"] > 0 else None


def _mb_per_s(s: SampleDict) -> float | None:
    return s["units"] / 1e6 / s["elapsed_s"] if s["elapsed_s"] > 0 and s["units"] else None


def _cpu_us_per_mb(s: SampleDict) -> float | None:
    return s["proxy_cpu_s"] * 1e6 / (s["units"] / 1e6) if s["units"] else None


def _proxy_util(s: SampleDict) -> float | None:
    return 100.0 * s["proxy_cpu_s"] / s["elapsed_s"] if s["elapsed_s"] > 0 else None


def _load_util(s: SampleDict) -> float | None:
    return 100.0 * s["load_cpu_s"] / s["elapsed_s"] if s["elapsed_s"] > 0 else None


def _kb_per_tunnel(s: SampleDict) -> float | None:
    if not s["units"] or s["rss_delta_bytes"] is None:
        return None
    return float(s["rss_delta_bytes"]) / float(s["units"]) / 1024.0


def _fds_per_tunnel(s: SampleDict) -> float | None:
    d = s["detail"]
    if not s["units"] or "fds_after" not in d:
        return None
    return (float(d["fds_after"]) - float(d["fds_before"])) / float(s["units"])


def _field(name: str) -> MetricFn:
    def get(s: SampleDict) -> float | None:
        v = s.get(name)
        return None if v is None else float(v)

    return get


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    fn: MetricFn
    digits: int = 0


@dataclass(frozen=True, slots=True)
class CaseSpec:
    case_id: str
    title: str
    metrics: tuple[Metric, ...]


_LAT = (
    Metric("p50_us", "p50 latency (µs)", _field("p50_us")),
    Metric("p99_us", "p99 latency (µs)", _field("p99_us")),
)


def _other(cpu: int, own: MetricFn) -> MetricFn:
    """Share of a CPU used by processes outside the bench (busy per /proc/stat minus our own)."""

    def get(s: SampleDict) -> float | None:
        busy = s["detail"].get("cpu_busy_pct", {}).get(str(cpu))
        mine = own(s)
        return None if busy is None or mine is None else max(0.0, float(busy) - mine)

    return get


# Above this share of CPU 1 taken by other processes, throughput figures are suspect.
INTERFERENCE_PCT = 10.0
# Above this share of CPU 0 used by the generator and origin, the load side is the limit.
LOAD_BOUND_PCT = 70.0

_UTIL = (
    Metric("proxy_cpu_pct", "proxy CPU use (% of CPU 1)", _proxy_util),
    Metric("cpu1_other_pct", "CPU 1 used by other processes (%)", _other(1, _proxy_util)),
    Metric("load_cpu_pct", "generator+origin CPU (% of CPU 0)", _load_util),
    Metric("cpu0_other_pct", "CPU 0 used by other processes (%)", _other(0, _load_util)),
)


def _tunnel_metrics() -> tuple[Metric, ...]:
    return (
        Metric("rate", "tunnels/s", _rate),
        *_LAT,
        Metric("cpu_us_per_unit", "proxy CPU µs per tunnel", _per_unit_us, 1),
        *_UTIL,
    )


def _bulk_metrics() -> tuple[Metric, ...]:
    return (
        Metric("mb_per_s", "MB/s (10^6 B)", _mb_per_s, 1),
        Metric("cpu_us_per_mb", "proxy CPU µs per MB", _cpu_us_per_mb, 1),
        *_UTIL,
    )


def _idle_metrics() -> tuple[Metric, ...]:
    return (
        Metric("kb_per_tunnel", "RSS per idle tunnel (kB = 1024 B)", _kb_per_tunnel, 2),
        Metric("tunnels", "tunnels held", _field("units")),
        Metric("fds_per_tunnel", "proxy fds per tunnel", _fds_per_tunnel, 2),
        Metric("rss_before_mb", "RSS before (MiB)", lambda s: s["detail"]["rss_before"] / 2**20, 1),
        Metric(
            "rss_after_mb", "RSS with tunnels (MiB)", lambda s: s["detail"]["rss_after"] / 2**20, 1
        ),
        Metric("setup_s", "time to open them all (s)", _field("elapsed_s"), 2),
    )


def case_specs(idle_sizes: Sequence[int]) -> list[CaseSpec]:
    specs = [
        CaseSpec(
            "a",
            "(a) keep-alive absolute-URI GET, 100 B body, `wrk -t1 -c64`",
            (
                Metric("rate", "requests/s", _rate),
                *_LAT,
                Metric("cpu_us_per_unit", "proxy CPU µs per request", _per_unit_us, 1),
                *_UTIL,
            ),
        ),
        CaseSpec(
            "b", "(b) new CONNECT tunnel per request, one small plain GET inside", _tunnel_metrics()
        ),
        CaseSpec(
            "b1",
            "(b1) new CONNECT tunnel per request, TLS handshake + small GET inside",
            _tunnel_metrics(),
        ),
        CaseSpec("c-tunnel", "(c) 256 MiB through one CONNECT tunnel", _bulk_metrics()),
        CaseSpec("c-get", "(c) 256 MiB as one absolute-URI GET", _bulk_metrics()),
    ]
    for n in idle_sizes:
        specs.append(CaseSpec(f"d-{n}", f"(d) {n:,} idle tunnels", _idle_metrics()))
    specs += [
        CaseSpec(
            "e",
            "(e) transparent-mode tunnels: a new redirected connection per request, one small "
            "plain GET inside",
            _tunnel_metrics(),
        ),
        CaseSpec(
            "e1",
            "(e1) transparent-mode tunnels: TLS handshake + small GET inside (the SNI path)",
            _tunnel_metrics(),
        ),
        CaseSpec(
            "h1",
            "(h1) SSL bump, keep-alive HTTPS GET: CONNECT + TLS with the proxy's leaf once, "
            "then GETs on it (origin over pooled verified TLS), 64 connections",
            (
                Metric("rate", "requests/s", _rate),
                *_LAT,
                Metric("cpu_us_per_unit", "proxy CPU µs per request", _per_unit_us, 1),
                *_UTIL,
            ),
        ),
        CaseSpec(
            "h2",
            "(h2) SSL bump, new connection: CONNECT + TLS handshake with the proxy's leaf + one "
            "GET + close",
            (
                Metric("rate", "connections/s", _rate),
                *_LAT,
                Metric("cpu_us_per_unit", "proxy CPU µs per connection", _per_unit_us, 1),
                *_UTIL,
            ),
        ),
    ]
    return specs


# Case (e): transparent mode may cost at most this much proxy CPU per tunnel above CONNECT.
TRANSPARENT_MARGIN_US = 20.0
# Case (f): median warm start of `awf run --backend netns`, exec of awf to the first byte.
WARM_START_NETNS_S = 0.3
WARM_START_DOCKER_S = 2.0  # bench/RESULTS.md case f; upstream: 13.9 s
E_REFERENCE = {"e": "b", "e1": "b1"}  # the loopback CONNECT case each transparent case matches
# Case (f): median of the whole command, exec of awf to its exit (the teardown included).
WHOLE_RUN_NETNS_S = 0.25
WHOLE_RUN_DOCKER_S = 1.5


@dataclass(frozen=True, slots=True)
class Target:
    case_id: str
    metric: str
    # "ratio>=": awf/squid at least value; "ratio<=": at most value (a cost);
    # "awf<=": awf's median at most value
    kind: str
    value: float
    text: str


def targets(idle_sizes: Sequence[int]) -> list[Target]:
    """Issue 13's table (performance round 2) and issue 15's bump cases."""
    out = [
        Target("a", "rate", "ratio>=", 1.7, "≥ 1.7x Squid req/s"),
        Target("a", "cpu_us_per_unit", "awf<=", 42.0, "≤ 42 µs proxy CPU per request"),
        Target("b", "rate", "ratio>=", 1.0, "≥ 1.0x Squid tunnels/s"),
        Target("b1", "cpu_us_per_unit", "ratio<=", 1.0, "proxy CPU per tunnel ≤ 1.0x Squid's"),
        Target("c-tunnel", "mb_per_s", "ratio>=", 1.0, "≥ 1.0x Squid MB/s"),
        Target("c-get", "mb_per_s", "ratio>=", 1.0, "≥ 1.0x Squid MB/s"),
        Target("h1", "rate", "ratio>=", 1.0, "≥ 1.0x Squid bumped req/s"),
        Target("h2", "rate", "ratio>=", 1.0, "≥ 1.0x Squid bumped connections/s"),
    ]
    out += [
        Target(f"d-{n}", "kb_per_tunnel", "awf<=", 4.0, "≤ 4 kB per idle tunnel")
        for n in idle_sizes
    ]
    return out


def summarise(spec: CaseSpec, samples: Sequence[SampleDict]) -> dict[str, dict[str, float]]:
    """metric key -> {median, min, max, n} over the repetitions that yield a value."""
    out: dict[str, dict[str, float]] = {}
    for m in spec.metrics:
        values = [v for v in (m.fn(s) for s in samples) if v is not None]
        if values:
            out[m.key] = spread(values).as_dict()
    return out


def _median(case: Mapping[str, Any], proxy: str, metric: str) -> float | None:
    per = case.get("per_proxy", {}).get(proxy, {})
    m = per.get("metrics", {}).get(metric)
    return None if m is None else float(m["median"])


def _variant_median(case: Mapping[str, Any], variant: str, metric: str) -> float | None:
    m = case.get("variants", {}).get(variant, {}).get("metrics", {}).get(metric)
    return None if m is None else float(m["median"])


def warm_summary(first_byte_s: Sequence[float], whole_s: Sequence[float],
                 timings: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Median, p95 and range of the warm starts, and the median of each run.json mark (pure)."""
    out: dict[str, Any] = {"runs": len(first_byte_s)}
    if first_byte_s:
        ordered = sorted(first_byte_s)
        out["first_byte"] = spread(ordered).as_dict()
        out["first_byte_p95"] = percentile(ordered, 95.0)
    if whole_s:
        out["whole_run"] = spread(whole_s).as_dict()
    marks: dict[str, dict[str, float]] = {}
    for mark in dict.fromkeys(k for t in timings for k in t):  # run order; sorted below
        values = [float(t[mark]) for t in timings if mark in t]
        marks[mark] = spread(values).as_dict()
    out["marks"] = dict(sorted(marks.items(), key=lambda kv: kv[1]["median"]))
    ends = [float(t["end"]) - float(t["exited"]) for t in timings if "end" in t and "exited" in t]
    if ends:  # the command's exit to run.json: awf's teardown
        out["teardown"] = spread(ends).as_dict()
    return out


def own_verdicts(cases: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Targets on awf alone: transparent mode against CONNECT (e, e1), warm start (f)."""
    out: list[dict[str, Any]] = []
    for cid, ref in E_REFERENCE.items():
        case = cases.get(cid)
        if case is None:
            continue
        measured = _variant_median(case, "transparent", "cpu_us_per_unit")
        explicit = case.get("variants", {}).get("explicit", {}).get("label", "explicit")
        refs = (
            (f"({ref}) CONNECT on loopback", _median(cases.get(ref, {}), AWF, "cpu_us_per_unit")),
            (f"{explicit} (same proxy)", _variant_median(case, "explicit", "cpu_us_per_unit")),
        )
        for label, value in refs:
            delta = None if measured is None or value is None else measured - value
            out.append(
                {
                    "case": cid,
                    "target": f"≤ {TRANSPARENT_MARGIN_US:g} µs proxy CPU per tunnel above "
                    f"{label}",
                    "unit": "µs",
                    "measured": measured,
                    "reference": value,
                    "reference_label": label,
                    "reference_note": "",
                    "difference": delta,
                    "met": None if delta is None else delta <= TRANSPARENT_MARGIN_US,
                }
            )
    f = cases.get("f")
    if f is not None:
        for backend, backend_case in f.get("backends", {}).items():
            m = backend_case.get("metrics", {}).get("first_byte")
            median = None if m is None else float(m["median"])
            p95 = backend_case.get("metrics", {}).get("first_byte_p95")
            limit = {"netns": WARM_START_NETNS_S, "docker": WARM_START_DOCKER_S}.get(backend)
            out.append(
                {
                    "case": f"f-{backend}",
                    "target": f"median ≤ {limit:g} s, exec of awf to the command's first byte"
                    if limit is not None
                    else backend_case.get("status", "not yet available"),
                    "unit": "s",
                    "measured": median,
                    "reference": None if p95 is None else float(p95),
                    "reference_label": "p95",
                    "reference_note": "p95",
                    "difference": None,
                    "met": None if median is None or limit is None else median <= limit,
                }
            )
            w = backend_case.get("metrics", {}).get("whole_run")
            whole = None if w is None else float(w["median"])
            cap = {"netns": WHOLE_RUN_NETNS_S, "docker": WHOLE_RUN_DOCKER_S}.get(backend)
            if cap is None:
                continue
            t = backend_case.get("metrics", {}).get("teardown")
            out.append(
                {
                    "case": f"f-{backend}",
                    "target": f"median ≤ {cap:g} s, the whole command: exec of awf to its exit",
                    "unit": "s",
                    "measured": whole,
                    "reference": None if t is None else float(t["median"]),
                    "reference_label": "teardown",
                    "reference_note": "teardown",
                    "difference": None,
                    "met": None if whole is None else whole <= cap,
                }
            )
    return out


def ratio(awf: float | None, squid: float | None) -> float | None:
    if awf is None or squid is None or squid == 0:
        return None
    return awf / squid


def verdicts(tgts: Sequence[Target], cases: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for t in tgts:
        case = cases.get(t.case_id, {})
        a, s = _median(case, AWF, t.metric), _median(case, SQUID, t.metric)
        r = ratio(a, s)
        met: bool | None
        if t.kind == "ratio>=":
            met = None if r is None else r >= t.value
        elif t.kind == "ratio<=":
            met = None if r is None else r <= t.value
        else:
            met = None if a is None else a <= t.value
        out.append(
            {
                "case": t.case_id,
                "metric": t.metric,
                "kind": t.kind,
                "value": t.value,
                "target": t.text,
                "awf": a,
                "squid": s,
                "ratio": r,
                "met": met,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return DASH
    return f"{v:,.{digits}f}"


def fmt_spread(m: Mapping[str, float] | None, digits: int) -> str:
    if m is None:
        return DASH
    if m["n"] <= 1:
        return fmt(m["median"], digits)
    return f"{fmt(m['median'], digits)} [{fmt(m['min'], digits)}{DASH}{fmt(m['max'], digits)}]"


def _met(v: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "n/a"}[v]


def interference(case: Mapping[str, Any]) -> float:
    """Largest median share of CPU 1 that other processes took while a case ran."""
    per = case.get("per_proxy") or case.get("variants") or {}
    return max(
        (
            float(p.get("metrics", {}).get("cpu1_other_pct", {}).get("median", 0.0))
            for p in per.values()
        ),
        default=0.0,
    )


def load_side(case: Mapping[str, Any]) -> float:
    """Largest median share of CPU 0 that the generator and origin used while a case ran."""
    per = case.get("per_proxy") or case.get("variants") or {}
    return max(
        (
            float(p.get("metrics", {}).get("load_cpu_pct", {}).get("median", 0.0))
            for p in per.values()
        ),
        default=0.0,
    )


def render(results: Mapping[str, Any]) -> str:
    meta = results["meta"]
    idle_sizes = meta["idle_sizes"]
    specs = case_specs(idle_sizes)
    cases = results["cases"]
    lines: list[str] = []
    add = lines.append
    mode = meta["mode"]
    add(f"# awf-proxy vs Squid: bench results ({mode})")
    add("")
    add(
        f"Generated {meta['finished']} by `{meta['entry']}` in {meta['wall_s']:.0f} s; "
        f"{meta['reps']} repetition(s) per case, values are the median [min-max]. "
        "Both proxies were measured in this one run on this machine; the ratio is "
        "awf-proxy / Squid."
    )
    add("")
    for name in PROXIES:
        st = results["proxies"].get(name, {})
        if st.get("status") != "ok":
            add(f"- **{name}: {st.get('status', 'not run')}**")
    noisy = [cid for cid, c in cases.items() if interference(c) > INTERFERENCE_PCT]
    if noisy:
        add(
            "- **The machine was not quiet**: other processes took more than "
            f"{INTERFERENCE_PCT:.0f} % of the proxy's CPU during {', '.join(noisy)}; "
            "compare CPU per unit rather than throughput there, or re-run on an idle machine "
            "(or with `--nice -10`)."
        )
    add("")
    add("## Targets")
    add("")
    add("What limits the targets that are not met, with the profiles: `bench/PROFILE.md`.")
    add("")
    add("| case | target | awf-proxy | Squid | awf/Squid | verdict |")
    add("|---|---|---|---|---|---|")
    for v in results["targets"]:
        digits = 2 if v["metric"] in ("kb_per_tunnel", "cpu_us_per_unit") else 0
        add(
            f"| {v['case']} | {v['target']} | {fmt(v['awf'], digits)} | {fmt(v['squid'], digits)}"
            f" | {fmt(v['ratio'], 2)}{TIMES if v['ratio'] is not None else ''} | {_met(v['met'])} |"
        )
    own = results.get("targets_own", [])
    if own:
        add("")
        add("Targets on awf alone (no Squid counterpart):")
        add("")
        add("| case | target | measured | reference | difference | verdict |")
        add("|---|---|---|---|---|---|")
        for v in own:
            digits = 1 if v["unit"] == "µs" else 3
            unit = f" {v['unit']}"
            meas = DASH if v["measured"] is None else fmt(v["measured"], digits) + unit
            note = f" ({v['reference_note']})" if v.get("reference_note") else ""
            ref = DASH if v["reference"] is None else f"{fmt(v['reference'], digits)}{unit}{note}"
            diff = DASH if v["difference"] is None else f"{v['difference']:+,.1f}{unit}"
            add(f"| {v['case']} | {v['target']} | {meas} | {ref} | {diff} | {_met(v['met'])} |")
    add("")
    add("## Cases")
    for spec in specs:
        case = cases.get(spec.case_id)
        add("")
        add(f"### {spec.title}")
        add("")
        if case is None:
            add("Not run.")
            continue
        if case.get("status") != "ok":
            add(f"{case.get('status')}")
            continue
        if case.get("note"):
            add(f"Note: {case['note']}.")
            add("")
        if "variants" in case:
            _render_variants(lines, spec, case, cases)
            continue
        per = case["per_proxy"]
        add("| metric | Squid | awf-proxy | awf/Squid |")
        add("|---|---|---|---|")
        for m in spec.metrics:
            sm = per.get(SQUID, {}).get("metrics", {}).get(m.key)
            am = per.get(AWF, {}).get("metrics", {}).get(m.key)
            r = ratio(None if am is None else am["median"], None if sm is None else sm["median"])
            add(
                f"| {m.label} | {fmt_spread(sm, m.digits)} | {fmt_spread(am, m.digits)} | "
                f"{fmt(r, 2)}{TIMES if r is not None else ''} |"
            )
        other = interference(case)
        if other > INTERFERENCE_PCT:
            add(
                f"\n**Interference:** other processes took up to {other:.0f} % of CPU 1 "
                "during this case; throughput and latency are unreliable, CPU per unit less so."
            )
        load = load_side(case)
        if load > LOAD_BOUND_PCT:
            add(
                f"\n**Load-bound:** the generator and origin used {load:.0f} % of CPU 0 here; "
                "this case measures the load side as much as the proxy (compare CPU per unit)."
            )
        for name in PROXIES:
            p = per.get(name, {})
            if p.get("status", "ok") != "ok":
                add(f"\n{name}: {p['status']}")
            errs = [s["errors"] for s in p.get("samples", [])]
            if any(errs):
                add(
                    f"\n{name}: errors per repetition {errs}; first: "
                    f"{_first_error(p.get('samples', []))!r}"
                )
    if "f" in cases:
        _render_warm_start(lines, cases["f"])
    for extra in results.get("not_measured", []):
        add("")
        add(f"### {extra['title']}")
        add("")
        add(extra["status"])
    add("")
    add("## Machine")
    add("")
    for k in (
        "cpu_model",
        "cpus",
        "kernel",
        "python",
        "squid",
        "nginx",
        "wrk",
        "awf_proxy",
        "nofile",
        "niceness",
        "loadavg_start",
        "loadavg_end",
        "git",
    ):
        add(f"- {k}: {meta.get(k, '?')}")
    add("")
    add("## Method")
    add("")
    for note in meta["notes"]:
        add(f"- {note}")
    add("")
    add("## Exact commands")
    add("")
    add("```")
    add(meta["entry"])
    add("```")
    add("")
    add("Started by the harness (ports and paths of this run):")
    add("")
    add("```")
    lines.extend(results["commands"])
    add("```")
    add("")
    return "\n".join(lines)


def with_addenda(rendered: str, addenda: str) -> str:
    """A full run's RESULTS.md followed by bench/RESULTS-addenda.md, its kept hand-written part."""
    return rendered.rstrip("\n") + "\n\n" + addenda.strip("\n") + "\n"


def _render_variants(
    lines: list[str], spec: CaseSpec, case: Mapping[str, Any], cases: Mapping[str, Any]
) -> None:
    """Case (e)/(e1): awf-proxy only, CONNECT and transparent over the same veth, and the
    loopback CONNECT case of the same kind for reference."""
    add = lines.append
    ref = E_REFERENCE.get(spec.case_id, "b")
    variants = case["variants"]
    ref_per = cases.get(ref, {}).get("per_proxy", {}).get(AWF, {}).get("metrics", {})
    add(
        "awf-proxy only, one proxy measured both ways over the same veth; Squid is not compared "
        "(its TLS interception needs ssl-bump peek/splice and the squid-openssl build, see "
        "Method)."
    )
    add("")
    add(
        f"| metric | awf ({ref}), loopback | {variants['explicit']['label']} | "
        f"{variants['transparent']['label']} | transparent {DASH} explicit | "
        f"transparent {DASH} ({ref}) |"
    )
    add("|---|---|---|---|---|---|")
    for m in spec.metrics:
        rm = ref_per.get(m.key)
        cm = variants["explicit"].get("metrics", {}).get(m.key)
        tm = variants["transparent"].get("metrics", {}).get(m.key)
        t = None if tm is None else tm["median"]
        d_conn = None if t is None or cm is None else t - cm["median"]
        d_ref = None if t is None or rm is None else t - rm["median"]
        add(
            f"| {m.label} | {fmt_spread(rm, m.digits)} | {fmt_spread(cm, m.digits)} | "
            f"{fmt_spread(tm, m.digits)} | {_signed(d_conn, m.digits)} | "
            f"{_signed(d_ref, m.digits)} |"
        )
    other = interference(case)
    if other > INTERFERENCE_PCT:
        add(
            f"\n**Interference:** other processes took up to {other:.0f} % of CPU 1 "
            "during this case; throughput and latency are unreliable, CPU per unit less so."
        )
    load = load_side(case)
    if load > LOAD_BOUND_PCT:
        add(
            f"\n**Load-bound:** the generator and origin used {load:.0f} % of CPU 0 here; "
            "this case measures the load side as much as the proxy (compare CPU per unit)."
        )
    for key, p in variants.items():
        if p.get("status", "ok") != "ok":
            add(f"\n{key}: {p['status']}")
        errs = [s["errors"] for s in p.get("samples", [])]
        if any(errs):
            add(
                f"\n{key}: errors per repetition {errs}; first: "
                f"{_first_error(p.get('samples', []))!r}"
            )


def _signed(v: float | None, digits: int) -> str:
    return DASH if v is None else f"{v:+,.{digits}f}"


def _render_warm_start(lines: list[str], case: Mapping[str, Any]) -> None:
    add = lines.append
    add("")
    add(f"### {case.get('title', '(f) `awf run` warm start')}")
    add("")
    if case.get("status") != "ok":
        add(str(case.get("status")))
        return
    backends = case.get("backends", {})
    names = list(backends)
    add("| metric | " + " | ".join(f"`--backend {n}`" for n in names) + " |")
    add("|---|" + "---|" * len(names))

    def row(label: str, get: Callable[[Mapping[str, Any]], str]) -> None:
        cells = []
        for n in names:
            b = backends[n]
            cells.append(get(b.get("metrics", {})) if b.get("status") == "ok" else DASH)
        add(f"| {label} | " + " | ".join(cells) + " |")

    add(
        "| status | "
        + " | ".join(
            "ok" if backends[n].get("status") == "ok" else str(backends[n].get("status"))
            for n in names
        )
        + " |"
    )
    row("runs", lambda m: str(m.get("runs", DASH)))
    row("exec of awf → first byte of the command (s)",
        lambda m: fmt_spread(m.get("first_byte"), 3))
    row("… p95 (s)", lambda m: fmt(m.get("first_byte_p95"), 3))
    def mark_cell(key: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda m: fmt_spread(m.get("marks", {}).get(key), 3)

    marks: dict[str, float] = {}  # every backend's marks, in the order of their medians
    for n in names:
        for key, v in backends[n].get("metrics", {}).get("marks", {}).items():
            marks.setdefault(key, float(v["median"]))
    for mark in sorted(marks, key=lambda k: marks[k]):
        row(f"run.json t0 → {mark} (s)", mark_cell(mark))
    row("teardown: the command's exit → run.json (s)",
        lambda m: fmt_spread(m.get("teardown"), 3))
    row("whole run, exec of awf → awf exits (s)", lambda m: fmt_spread(m.get("whole_run"), 3))


def _first_error(samples: Sequence[SampleDict]) -> str:
    for s in samples:
        d = s.get("detail", {})
        e = d.get("loadgen", {}).get("first_error") if isinstance(d.get("loadgen"), dict) else None
        if e:
            return str(e)
        w = d.get("wrk")
        if isinstance(w, dict) and any(v for k, v in w.items() if k.startswith("err_")):
            return ", ".join(f"{k}={v}" for k, v in w.items() if k.startswith("err_") and v)
    return ""
