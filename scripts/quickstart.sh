#!/usr/bin/env bash
# Runs README.md's Quickstart verbatim: the commands between `<!-- quickstart:begin -->` and
# `<!-- quickstart:end -->`, one per line, in a fresh temporary folder with the built
# `revbloom` and example `gateway` on PATH. Between steps it waits (polling, with a deadline)
# for what the next step needs: the publisher ready, the gateway ready with its dev token,
# the revocation reached the gateway. It asserts the first `curl` answers 200 and the last
# 401. Background (`&`) processes are stopped at exit.
#
# Usage: scripts/quickstart.sh            (builds the debug binaries first)
#        QUICKSTART_PROFILE=release scripts/quickstart.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
profile="${QUICKSTART_PROFILE:-debug}"
target="${CARGO_TARGET_DIR:-$root/target}"
deadline_s="${QUICKSTART_DEADLINE:-30}"

fail() { printf 'quickstart: FAIL: %s\n' "$*" >&2; exit 1; }

# The commands: the lines of the fenced block between the markers, comments and blanks skipped.
mapfile -t cmds < <(awk '
    /<!-- quickstart:begin -->/ { inside = 1; next }
    /<!-- quickstart:end -->/ { inside = 0 }
    inside && !/^```/ && !/^[[:space:]]*(#|$)/ { print }
' "$root/README.md")
[ "${#cmds[@]}" -eq 5 ] || fail "expected 5 commands between the quickstart markers in README.md, found ${#cmds[@]}"

build_flags=()
[ "$profile" = release ] && build_flags+=(--release)
(cd "$root" && cargo build "${build_flags[@]}" --workspace --all-features --bin revbloom --example gateway)
export PATH="$target/$profile:$target/$profile/examples:$PATH"

# The quickstart's fixed ports must be free, or a leftover process would answer in its place.
for url in http://127.0.0.1:8750/healthz http://127.0.0.1:3000/healthz; do
    if curl -s -o /dev/null --max-time 2 "$url"; then
        fail "something already answers on ${url%/healthz}; stop it first"
    fi
done

work="$(mktemp -d)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# Poll `what` (a shell condition) until it holds or the deadline passes.
wait_for() {
    local what="$1" cond="$2" end=$((SECONDS + deadline_s))
    until eval "$cond"; do
        [ "$SECONDS" -lt "$end" ] || fail "timed out after ${deadline_s}s waiting for $what"
        sleep 0.2
    done
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 200 ]; }
generation() { curl -s --max-time 2 http://127.0.0.1:3000/healthz | sed -n 's/.*"generation":\([0-9]*\).*/\1/p'; }

# Run command `i` verbatim; a trailing `&` runs it in the background, stopped at exit.
run() {
    local cmd="${cmds[$1]}"
    printf '\n$ %s\n' "$cmd"
    if [[ "$cmd" =~ \&[[:space:]]*$ ]]; then
        eval "$cmd"
        pids+=("$!")
    else
        eval "$cmd"
    fi
}
# The last line a `curl -w '\n%{http_code}\n'` printed: the status.
status_of() { run "$1" | tee /dev/stderr | tail -n 1; }

run 0
wait_for "the publisher's /readyz" 'ready http://127.0.0.1:8750/readyz'
run 1
wait_for "the gateway's /readyz and demo.jwt" 'ready http://127.0.0.1:3000/readyz && [ -s demo.jwt ]'
before="$(generation)"

code="$(status_of 2)"
[ "$code" = 200 ] || fail "the fresh token answered $code, expected 200"

run 3
wait_for "the revocation to reach the gateway (generation past $before)" '[ "$(generation)" -gt "$before" ] 2>/dev/null'

code="$(status_of 4)"
[ "$code" = 401 ] || fail "the revoked token answered $code, expected 401"

# Everything the quickstart created must be ignored by git in a checkout.
for f in *; do
    git -C "$root" check-ignore -q --no-index "$f" || fail "the quickstart creates $f, which .gitignore does not cover"
done

printf '\nquickstart: OK (200, then 401 after the revocation)\n'
