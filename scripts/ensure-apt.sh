#!/usr/bin/env bash
# Install the named Debian packages that are missing; quiet and quick when all are present.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "awf: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "[awf] installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/awf-apt.log 2>&1; then
    apt-get update -q >>/tmp/awf-apt.log 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/awf-apt.log 2>&1 || {
        echo "awf: apt-get install failed, see /tmp/awf-apt.log" >&2; tail -5 /tmp/awf-apt.log >&2; exit 1; }
fi
