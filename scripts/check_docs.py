#!/usr/bin/env python3
"""Run the ```console examples of README.md and docs/API.md and compare what they print.

A console block is a session: lines starting with `$ ` are commands (a trailing backslash
continues one on the next line), the lines after a command up to the next `$ ` are what it
prints. The blocks of one document run in order, in one fresh temporary folder, against one
fresh publisher (`revbloom serve`, started by this script on a random loopback port; the
documents say `127.0.0.1:8750`, which is rewritten to it). `revbloom` and the example
`gateway` come from the build folder given with --bin-dir.

Comparison is exact, line by line, after both sides are normalised the same way:

- an integer of 10 digits or more (a unix time, a millisecond generation) reads as <N>, and
  so does the bucket number that starts a bucket row of `revbloom inspect`;
- the value of a JSON key or header that holds an age or a size (`*age*`, `content-length`),
  and the seconds of `age N`, read as <N>;
- a hex string of 16 digits or more reads as <HEX> (key ids, generated token ids).

Every file the examples create in their folder must be one that .gitignore ignores, so that
running them in a checkout leaves `git status` clean.

An expected line `...` matches any number of lines. A last expected line `[exit N]` says the
command exits with status N; otherwise it must exit 0. A shell assignment (`EXP=$(...)`) is
evaluated once and its value reused by every later command, so a time computed from "now"
stays the same throughout the document. A read-only command (no POST, no `revoke`, `cutoff`,
`build` or `keygen`) whose output does not match yet is retried for a few seconds; after a
write the script waits (up to 10 s) until the publisher has published a newer generation, so
the next command sees it, as a person typing would.

Usage: scripts/check_docs.py --bin-dir target/debug [--print | --update] [FILE ...]
       --print shows what each command printed instead of comparing; --update writes it into
       the documents as the expected output (review the diff before committing it).
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_ADDR = "127.0.0.1:8750"
RETRY_SECS = 8.0
WRITES = re.compile(r"-X POST|\brevbloom (revoke|cutoff|build|keygen)\b|\bgateway\b")
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$", re.S)
EXIT = re.compile(r"^\[exit (\d+)\]$")


def blocks(path):
    """The console blocks of `path`: lists of (command, expected lines, line number)."""
    out, block, cmd, expected, start, inside = [], None, None, [], 0, False
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not inside and line.strip() == "```console":
            inside, block, cmd = True, [], None
        elif inside and line.strip() == "```":
            if cmd is not None:
                block.append((cmd, expected, start))
            out.append(block)
            inside, cmd = False, None
        elif inside and line.startswith("$ "):
            if cmd is not None:
                block.append((cmd, expected, start))
            start, cmd, expected = i + 1, line[2:], []
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd + "\n" + lines[i]
        elif inside:
            if cmd is None:
                sys.exit(f"{path}:{i + 1}: output before any `$ ` command")
            expected.append(line)
        i += 1
    if inside:
        sys.exit(f"{path}: a ```console block is not closed")
    return out


def normalise(line):
    line = re.sub(r'("?[A-Za-z_-]*age[A-Za-z_-]*"?\s*[:=]\s*)\d+', r"\1<N>", line)
    line = re.sub(r"(?i)(content-length:\s*)\d+", r"\1<N>", line)
    line = re.sub(r"(?i)^date: .*", "date: <DATE>", line)
    line = re.sub(r"\bage \d+", "age <N>", line)
    line = re.sub(r"\b\d{10,}\b", "<N>", line)
    # `revbloom inspect`'s bucket rows start with the bucket number, exp / width.
    line = re.sub(r"^\d+(\s+<N>\.\.<N>)", r"<N>\1", line)
    line = re.sub(r"\b[0-9a-f]{16,}\b", "<HEX>", line)
    return line.rstrip()


def matches(expected, actual):
    """Whether `actual` lines fit `expected` (normalised, with `...` wildcards)."""
    exp = [normalise(e) for e in expected]
    act = [normalise(a) for a in actual]

    def go(i, j):
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(go(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and go(i + 1, j + 1)

    return go(0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generation(addr):
    """The publisher's current generation, from /healthz (None when unreachable)."""
    try:
        with urllib.request.urlopen(f"http://{addr}/healthz", timeout=2) as r:
            return json.loads(r.read()).get("generation")
    except (OSError, ValueError):
        return None


def wait_published(addr, before, deadline_s=10.0):
    """Wait until the generation is past `before` (a write that changed nothing never gets
    there: that costs the deadline, once)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        g = generation(addr)
        if g is not None and before is not None and g > before:
            return
        time.sleep(0.05)


def wait_ready(url, proc, deadline_s=30):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"the publisher exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"the publisher did not get ready within {deadline_s}s")


def run_doc(path, bin_dir, show, record=None):
    work = tempfile.mkdtemp(prefix="revbloom-docs-")
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{os.path.join(bin_dir, 'examples')}:{env['PATH']}"
    env.pop("REVBLOOM_ADMIN_TOKEN", None)
    env["NO_COLOR"] = "1"
    # `revbloom revoke` and `cutoff` reach the publisher at their default address otherwise.
    env["REVBLOOM_SERVER"] = f"http://{addr}"
    log = open(os.path.join(work, "publisher.log"), "w")
    server = subprocess.Popen(
        ["revbloom", "serve", "--listen", addr, "--data", "revbloom-data"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    failures, commands = 0, 0
    prelude = []
    try:
        wait_ready(f"http://{addr}/readyz", server)
        for block in blocks(path):
            for cmd, expected, line_no in block:
                commands += 1
                script = cmd.replace(DOC_ADDR, addr)
                status = 0
                if expected and EXIT.match(expected[-1].strip()):
                    status = int(EXIT.match(expected[-1].strip()).group(1))
                    expected = expected[:-1]
                while expected and expected[-1] == "":
                    expected = expected[:-1]
                assign = ASSIGNMENT.match(script)
                if assign:
                    # Evaluate once; later commands see the value, not the expression.
                    name, expr = assign.groups()
                    r = subprocess.run(
                        ["bash", "-c", "\n".join(prelude) + f'\n{name}={expr}\nprintf %s "${name}"'],
                        cwd=work, env=env, capture_output=True, text=True, timeout=60,
                    )
                    if r.returncode != 0:
                        print(f"{path}:{line_no}: FAIL: {cmd}\n{r.stderr}")
                        failures += 1
                        continue
                    prelude.append(f"{name}={shlex_quote(r.stdout)}")
                    continue
                retry = not WRITES.search(script)
                before = None if retry else generation(addr)
                end = time.monotonic() + (RETRY_SECS if retry else 0)
                while True:
                    r = subprocess.run(
                        ["bash", "-c", "set -o pipefail\n" + "\n".join(prelude) + "\n" + script],
                        cwd=work, env=env, capture_output=True, text=True, timeout=120,
                    )
                    actual = r.stdout.replace(addr, DOC_ADDR).rstrip("\n")
                    actual = actual.split("\n") if actual else []
                    ok = r.returncode == status and matches(expected, actual)
                    if ok or show or time.monotonic() >= end:
                        break
                    time.sleep(0.2)
                publishes = "-X POST" in script or re.search(r"\brevbloom (revoke|cutoff)\b", script)
                if publishes and r.returncode == 0 and '"error"' not in r.stdout:
                    wait_published(addr, before)
                if record is not None:
                    record[line_no] = actual + ([f"[exit {r.returncode}]"] if r.returncode else [])
                if show:
                    print(f"$ {cmd}")
                    print("\n".join(actual))
                    if r.returncode:
                        print(f"[exit {r.returncode}]")
                    if r.stderr.strip():
                        print("  (stderr) " + r.stderr.strip().replace("\n", "\n  (stderr) "))
                elif not ok:
                    failures += 1
                    print(f"{path}:{line_no}: FAIL: {cmd}")
                    print(f"  exit status {r.returncode}, expected {status}")
                    print("  expected:\n    " + "\n    ".join(expected))
                    print("  printed:\n    " + "\n    ".join(actual))
                    if r.stderr.strip():
                        print("  stderr:\n    " + r.stderr.strip().replace("\n", "\n    "))
        failures += unignored(work, exclude={"publisher.log"})
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if failures:
            with open(os.path.join(work, "publisher.log")) as f:
                print("  publisher log (tail):\n    " + "\n    ".join(f.read().splitlines()[-20:]))
        shutil.rmtree(work, ignore_errors=True)
    return commands, failures


def update(path, record):
    """Rewrite the expected output of every command recorded (by its first line number)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, i, inside = [], 0, False
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line.strip() == "```console":
            inside = True
        elif inside and line.strip() == "```":
            inside = False
        elif inside and line.startswith("$ "):
            no = i + 1
            while lines[i].endswith("\\"):
                i += 1
                out.append(lines[i])
            # Skip the old output, put the new one.
            j = i + 1
            while j < len(lines) and not lines[j].startswith("$ ") and lines[j].strip() != "```":
                j += 1
            out.extend(record.get(no, lines[i + 1:j]))
            i = j
            continue
        i += 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


def unignored(work, exclude=()):
    """Files the examples created that .gitignore would not ignore in a checkout; each one is
    printed and counted as a failure."""
    bad = 0
    for name in sorted(os.listdir(work)):
        if name in exclude:
            continue
        r = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", "--no-index", name])
        if r.returncode != 0:
            print(f"FAIL: the examples create {name!r}, which .gitignore does not cover")
            bad += 1
    return bad


def shlex_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-dir", required=True, help="folder holding revbloom and examples/gateway")
    p.add_argument("--print", dest="show", action="store_true", help="print outputs, compare nothing")
    p.add_argument("--update", action="store_true", help="write the outputs into the documents")
    p.add_argument("files", nargs="*", default=["README.md", "docs/API.md"])
    a = p.parse_args()
    bin_dir = os.path.abspath(a.bin_dir)
    total_cmds = total_fail = 0
    for f in a.files:
        path = os.path.join(ROOT, f) if not os.path.isabs(f) else f
        n = sum(len(b) for b in blocks(path))
        if n == 0:
            sys.exit(f"{f}: no ```console example to run")
        record = {} if a.update else None
        cmds, fails = run_doc(path, bin_dir, a.show or a.update, record)
        if a.update:
            update(path, record)
            continue
        total_cmds += cmds
        total_fail += fails
        if not a.show:
            print(f"{f}: {cmds - fails}/{cmds} commands print what the document says")
    sys.exit(1 if total_fail else 0)


if __name__ == "__main__":
    main()
