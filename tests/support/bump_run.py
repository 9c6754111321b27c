"""`awf run --ssl-bump --allow-urls` end to end, the same scenario on both backends.

One run of PROBES inside the sandbox against the wan's HTTPS origin (tests/support/wan.py): the
clients are given no CA flag at all (no -k, no --cacert), so they succeed only if the sandbox
trusts the run's CA by itself. The proxy verifies the origin with the wan's test CA, given as
`awf run --extra-ca-certs`. `check_*` assert what the probes, the access log and the host show
afterwards; each backend's test module calls them from its own tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support import wan as wanmod

RULE = "GET https://allowed.test/ok/*"


def argv(ca_pem: Path, logs: Path) -> list[str]:
    """awf run's flags for the scenario (after --backend)."""
    return ["--ssl-bump", "--allow-urls", RULE, "--extra-ca-certs", str(ca_pem),
            "--resolve", f"allowed.test={wanmod.V4}", "--resolve", f"other.test={wanmod.V4}",
            "--proxy-logs-dir", str(logs)]


PROBES = r'''
import glob, json, os, shutil, subprocess, sys
def run(*cmd, timeout=30, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return {"rc": p.returncode, "out": p.stdout[-800:], "err": p.stderr[-800:]}
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "out": "", "err": ""}
    except OSError as e:
        return {"rc": "oserror", "out": "", "err": str(e)}
def readable(pattern):
    out = []
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as f:
                f.read(1)
            out.append(path)
        except OSError as e:
            pass
    return out
def py_get(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return {"rc": 0, "out": f"{r.status} {r.read().decode()[:100]}", "err": ""}
    except Exception as e:
        return {"rc": 1, "out": str(getattr(e, "code", "")), "err": repr(e)[:400]}
C = ["curl", "-sS", "-m", "20"]
H = ["-o", "/dev/null", "-D", "-", "-w", "code=%{http_code}"]
TRUST = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT",
         "DENO_CERT", "NODE_EXTRA_CA_CERTS")
bare = {k: v for k, v in os.environ.items() if k not in TRUST}
NODE = ("const https = require('https');"
        "https.get('https://allowed.test/ok/node', r => { let b = '';"
        " r.on('data', c => b += c); r.on('end', () => console.log(r.statusCode, b.trim())); })"
        ".on('error', e => { console.log('error', e.code || e.message); process.exit(1); });")
JAVA_GET = """
public class Get { public static void main(String[] a) throws Exception {
  var c = java.net.http.HttpClient.newHttpClient();
  var r = c.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(a[0])).build(),
                 java.net.http.HttpResponse.BodyHandlers.ofString());
  System.out.println(r.statusCode() + " " + r.body().trim()); } }
"""
# docs/proxy.md §11's Java step, as written there (JAVA_HOME found from the java on PATH)
JAVA = """set -e
export JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
cp "$JAVA_HOME/lib/security/cacerts" /tmp/awf-trust
chmod u+w /tmp/awf-trust
keytool -importcert -noprompt -alias awf-run -file /run/awf/bump-ca.pem \\
        -keystore /tmp/awf-trust -storepass changeit >/dev/null
export JAVA_TOOL_OPTIONS="-Djavax.net.ssl.trustStore=/tmp/awf-trust \\
-Djavax.net.ssl.trustStorePassword=changeit"
java /tmp/Get.java https://allowed.test/ok/java
"""
def java():
    if not (shutil.which("java") and shutil.which("keytool")):
        return {"rc": "absent", "out": "", "err": ""}
    with open("/tmp/Get.java", "w") as f:
        f.write(JAVA_GET)
    return run("bash", "-c", JAVA, timeout=180)
r = {
 "java": java(),
 "ok": run(*C, "https://allowed.test/ok/x"),
 "ok_transparent": run(*C, "--noproxy", "*", "https://allowed.test/ok/y"),
 "other_path": run(*C, *H, "https://allowed.test/nope"),
 "dot_dot": run(*C, *H, "--path-as-is", "https://allowed.test/ok/../nope"),
 "post": run(*C, *H, "-X", "POST", "-d", "x", "https://allowed.test/ok/x"),
 "other_host": run(*C, *H, "https://other.test/ok/x"),
 "default_store": run(*C, "https://allowed.test/ok/store", env=bare),
 "python": py_get("https://allowed.test/ok/py"),
 "node": (run("node", "-e", NODE) if shutil.which("node")
          else {"rc": "absent", "out": "", "err": ""}),
 "env": {k: os.environ.get(k) for k in TRUST},
 "key_readable": readable("/dev/shm/awf-bump-*/*") + readable("/run/awf-ca/*"),
 "key_found": run("find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune",
                  "-o", "(", "-name", "ca-key.pem", "-o", "-name", "awf-bump-*", ")", "-print",
                  timeout=120),
}
print("PROBES " + json.dumps(r))
'''


def results(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBES ")), None)
    assert line, f"no probe output; exit {done.returncode}; stderr: {done.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(line[len("PROBES "):])
    return out


def check_rule_holds(p: dict[str, Any]) -> None:
    for name in ("ok", "ok_transparent", "default_store"):
        assert p[name]["rc"] == 0, (name, p[name])
        assert "hello allowed.test" in p[name]["out"], (name, p[name])
    assert p["python"]["out"].startswith("200 hello allowed.test"), p["python"]
    if shutil.which("node"):
        assert p["node"]["out"].startswith("200 hello allowed.test"), p["node"]
    if shutil.which("java") and shutil.which("keytool"):  # the documented workaround
        assert p["java"]["out"].strip().endswith("200 hello allowed.test"), p["java"]
    for name in ("other_path", "dot_dot", "post"):
        out = p[name]["out"].lower()
        assert "code=403" in out, (name, p[name])
        assert "x-awf-reason: url_not_allowed" in out, (name, p[name])
    assert "403" in p["other_host"]["out"] + p["other_host"]["err"], p["other_host"]


def check_trust_variables(p: dict[str, Any]) -> None:
    env = p["env"]
    assert env["NODE_EXTRA_CA_CERTS"] == "/run/awf/bump-ca.pem", env
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                 "PIP_CERT", "DENO_CERT"):
        assert env[name] == "/run/awf/bump-ca-bundle.pem", (name, env)


def check_key_unreachable(p: dict[str, Any]) -> None:
    assert p["key_readable"] == [], p["key_readable"]
    assert p["key_found"]["out"].strip() == "", p["key_found"]


def check_log(logs: Path) -> None:
    records = [json.loads(ln) for ln in (logs / "access.jsonl").read_text().splitlines()
               if ln.strip()]
    inner = {(r.get("method"), r.get("url")): r for r in records if r.get("tls") == "bumped"}
    assert inner[("GET", "https://allowed.test/ok/x")]["decision"] == "allow", inner
    for key in (("GET", "https://allowed.test/nope"), ("POST", "https://allowed.test/ok/x")):
        assert inner[key]["decision"] == "deny", inner
        assert inner[key]["reason"] == "url_not_allowed", inner


def check_nothing_left(logs: Path) -> str:
    """No CA file of the run on the host; the run's id."""
    run = json.loads((logs / "run.json").read_text())["id"]
    assert not Path(f"/dev/shm/awf-bump-{run}").exists()
    assert not list(Path("/dev/shm").glob(f"awf-bump-{run}*"))
    return str(run)
