#!/usr/bin/env bash
# Durable revocations/s through N revbloom replicas on one throwaway PostgreSQL (fsync on,
# synchronous_commit on), with the CPU seconds of PostgreSQL and of the replicas over the run
# (docs/BENCHMARKS.md, "Scaling out").
#
#   cargo build --release -p revbloom-server --bin revbloom --example load
#   scripts/bench_pg_replicas.sh NREPLICAS SECS CLIENTS      # e.g. 3 10 128
#
# The clients are split evenly over the replicas (examples/load against each), every revocation
# is its own POST acknowledged after COMMIT. STATS=1 also prints pg_stat_statements' top
# statements and the WAL counters. Needs PostgreSQL's server binaries (Debian: postgresql); as
# root the cluster runs as the postgres user.
set -uo pipefail
N=${1:-1}; SECS=${2:-10}; CLIENTS=${3:-64}
T=${T:-${CARGO_TARGET_DIR:-target}/release}
# A folder with every server and client binary used here: Debian's, else the one on PATH.
PGBIN=
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV) "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do
  if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_isready" ] && [ -x "$d/psql" ] && [ -x "$d/pg_ctl" ]; then
    PGBIN=$d; break
  fi
done
[ -n "$PGBIN" ] || { echo "PostgreSQL binaries (initdb, postgres, pg_isready, psql, pg_ctl) not found; apt-get install postgresql" >&2; exit 1; }
B=$(mktemp -d /tmp/rbperf.XXXX); chmod 755 "$B"
mkdir "$B/data"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$B" "$B/data"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
as_pg $PGBIN/initdb -D "$B/data" -U revbloom --auth=trust -E UTF8 >/dev/null
as_pg $PGBIN/postgres -D "$B/data" -p "$PORT" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$B" -c max_connections=200 \
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all ${PGOPTS:-} >"$B/pg.log" 2>&1 &
PGPID=$!
for i in $(seq 1 50); do $PGBIN/pg_isready -h 127.0.0.1 -p "$PORT" -q && break; sleep 0.2; done
PSQL="$PGBIN/psql -h 127.0.0.1 -p $PORT -U revbloom -d postgres -X -q"
$PSQL -c "CREATE EXTENSION pg_stat_statements" >/dev/null
K=$(mktemp -d)
$T/revbloom keygen --seal-key "$K/seal.key" 2>/dev/null
$T/revbloom keygen --private "$K/sign.pem" --public "$K/sign.pub" 2>/dev/null
echo "{\"seal_key_file\":\"$K/seal.key\",\"signing_key\":\"$K/sign.pem\"${EXTRA_CONFIG:-}}" > "$K/c.json"
export REVBLOOM_ADMIN_TOKEN=bench-admin-token-0123456789
PIDS=(); URLS=()
for i in $(seq 1 "$N"); do
  $T/revbloom serve --listen 127.0.0.1:0 --data "$K/d$i" --config "$K/c.json" --store "postgres://revbloom@127.0.0.1:$PORT/postgres" >"$K/out$i" 2>"$K/err$i" &
  PIDS+=($!)
done
for i in $(seq 1 "$N"); do
  for j in $(seq 1 100); do grep -q "listening on" "$K/out$i" 2>/dev/null && break; sleep 0.1; done
  URLS+=("$(sed -n 's/^revbloom: listening on //p' "$K/out$i")")
done
sleep 1
$PSQL -c "SELECT pg_stat_statements_reset()" >/dev/null
cpu() { # utime+stime ticks of a pid and its threads
  awk '{print $14+$15}' /proc/$1/stat 2>/dev/null || echo 0; }
# The postmaster (first line of postmaster.pid) and its children, the backends.
pgcpu() { local pm s=0; pm=$(head -1 "$B/data/postmaster.pid")
  for p in "$pm" $(pgrep -P "$pm"); do s=$((s + $(cpu $p))); done; echo $s; }
rbcpu() { local s=0; for p in "${PIDS[@]}"; do s=$((s + $(cpu $p))); done; echo $s; }
PG0=$(pgcpu); RB0=$(rbcpu)
echo "replicas: ${URLS[*]}  load: $(cut -d' ' -f1-3 /proc/loadavg)"
LP=()
per=$(( CLIENTS / N ))
for u in "${URLS[@]}"; do
  $T/examples/load --server "$u" --secs "$SECS" --clients "$per" --fetchers 0 > "$K/load-$(basename $u)" 2>&1 &
  LP+=($!)
done
for p in "${LP[@]}"; do wait "$p" || true; done
PG1=$(pgcpu); RB1=$(rbcpu)
for f in "$K"/load-*; do echo "== $f"; cat "$f"; done
echo "cpu seconds over the run: postgres $(( (PG1-PG0) ))cs revbloom $(( (RB1-RB0) ))cs (cs = 1/100 s); load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${STATS:-}" ]; then
  $PSQL -c "SELECT calls, round(total_exec_time::numeric,1) AS ms, round((total_exec_time/calls)::numeric,3) AS ms_per, rows, left(regexp_replace(query,'\s+',' ','g'),110) AS q FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"
  $PSQL -c "SELECT wal_records, wal_bytes, wal_write, wal_sync, round(wal_sync_time::numeric,1) sync_ms FROM pg_stat_wal" 2>/dev/null || true
  $PSQL -c "SELECT xact_commit, count(*) FILTER (WHERE true) FROM pg_stat_database WHERE datname='postgres' GROUP BY 1"
fi
kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true
as_pg $PGBIN/pg_ctl -D "$B/data" stop -m fast >/dev/null 2>&1 || true; wait $PGPID || true
grep -h -E "ERROR|WARN" "$K"/err* | sed -E "s/^[^ ]+ +//" | cut -c1-300 | sort | uniq -c | sort -rn | head -20
rm -rf "$B" "$K"
