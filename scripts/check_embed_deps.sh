#!/usr/bin/env bash
# The library embeds light: its normal dependency tree, per feature, holds no crate of a kind
# it must not pull in. Fails with the offending crates and the path that brings them in.
set -euo pipefail
cd "$(dirname "$0")/.."

# Crates that mean an async runtime, an HTTP stack, a database, a CLI or a progress bar.
runtime='tokio|async-std|smol|mio'
http_client='reqwest|hyper|hyper-util|h2|ureq'
http_server='axum|axum-core|actix-web|warp'
database='redb|rusqlite|sqlx|tokio-postgres|postgres'
cli='clap|indicatif|anyhow|tracing-subscriber|memmap2'
jwt='jsonwebtoken|serde|serde_json'

# crates_of FEATURES: the crate names in `cargo tree -e normal` for the library.
crates_of() {
    cargo tree -q -p revbloom -e normal --prefix none --no-dedupe --no-default-features "$@" \
        | awk '{print $1}' | sort -u
}

fail=0
# check LABEL FORBIDDEN-REGEX FEATURES...
check() {
    local label="$1" forbidden="$2"
    shift 2
    local bad
    bad=$(crates_of "$@" | grep -E -x "($forbidden)" || true)
    local n
    n=$(crates_of "$@" | wc -l)
    if [ -n "$bad" ]; then
        echo "FAIL $label: pulls in $(echo "$bad" | tr '\n' ' ')"
        for c in $bad; do cargo tree -q -p revbloom -e normal --no-default-features "$@" -i "$c" | head -8; done
        fail=1
    else
        echo "ok   $label: $n crates"
    fi
}

check "default features" "$runtime|$http_client|$http_server|$database|$cli|$jwt"
check "--features verify" "$runtime|$http_client|$http_server|$database|$cli" --features verify
check "--features tower" "$runtime|$http_client|$http_server|$database|$cli" --features tower
check "--features sync" "$http_server|$database|$cli" --features sync
check "--all-features" "$http_server|$database|$cli" --all-features
exit $fail
