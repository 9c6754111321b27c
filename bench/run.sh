#!/usr/bin/env bash
# Entry point of `make bench` (full, < 30 min) and `make bench-quick` (`bench/run.sh --quick`, < 5 min).
# Installs what the bench needs from Debian's packages, builds the C load generator, then runs
# the harness with the repo's venv. Extra arguments go to `python -m bench.harness`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
py="$repo/.venv/bin/python"
out="$repo/bench/out"

if [ ! -x "$py" ]; then
    echo "bench: no venv python at $py; create the venv first (python3 -m venv .venv && .venv/bin/pip install -e '.[test]')" >&2
    exit 1
fi

# squid-openssl: the reference proxy (the OpenSSL build, for ssl_bump in cases h1/h2; the
# `squid` package is the GnuTLS build without it, and the two conflict; both ship
# /usr/sbin/squid); nginx-light: the origin; wrk: case (a); gcc + libssl-dev: loadgen.c;
# util-linux: taskset; nftables + iproute2: case (e)'s client namespace and redirect. A package's
# own service is never started: Debian's policy-rc.d hook (exit 101) is put in place for the
# install only if the machine has none.
pkgs=(squid-openssl nginx-light wrk gcc libc6-dev libssl-dev util-linux nftables iproute2)
policy=/usr/sbin/policy-rc.d
made_policy=0
missing=0
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing=1
done
if [ "$missing" -eq 1 ] && [ ! -e "$policy" ] && [ "$(id -u)" -eq 0 ]; then
    printf '#!/bin/sh\n# awf-bench: temporary, keeps package installs from starting services\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup_policy() { if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup_policy EXIT
bash "$repo/scripts/ensure-apt.sh" "${pkgs[@]}"
cleanup_policy
made_policy=0

mkdir -p "$out"
if [ ! -x "$out/loadgen" ] || [ "$here/loadgen.c" -nt "$out/loadgen" ]; then
    gcc -O2 -Wall -Wextra -o "$out/loadgen.tmp" "$here/loadgen.c" -lssl -lcrypto
    mv "$out/loadgen.tmp" "$out/loadgen"
fi

entry="bench/run.sh${*:+ $*}"
cd "$repo"
exec "$py" -m bench.harness --loadgen "$out/loadgen" --entry "$entry" "$@"
