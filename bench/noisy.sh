#!/usr/bin/env bash
# A noisy neighbour: tenant B's pgbench TPS alone, then beside a CPU hog, a memory hog and a heavy
# writer in tenant A, with A's limits on and off, in one run. Run `bench/noisy.sh --help`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/noisy.sh [options]

Measures what one tenant's load costs another on the same host, with pgfleet's limits and without,
and prints each of B's pgbench results as a ratio to B alone (measured at the start and at the end
of the same run; the baseline is their mean). The target: B keeps at least 0.8x its alone TPS
beside every hog when A's limits are on.

  B            a tenant with no limits; pgbench (TPC-B-like, scale 1, 2 clients) on its own socket
  A limited    --cpu 0.5 --memory 256MB --pids 200 --io-weight 10
  A unlimited  the same tenant after `tenant set --cpu none --memory none --pids none --io-weight none`
  hogs         cpu: two backends summing a long series (this host has 2 cores: an unlimited A takes both)
               memory: backends sorting about 600 MB in memory with work_mem = 2GB, over and over
               (under 256MB the kernel ends them inside A; unlimited they take what they want)
               writer: two backends inserting 1 kB rows and checkpointing, over and over

Each hog starts, runs 2 s before B's pgbench starts, and is cancelled when it ends.

Options:
  -t, --time S      seconds of each pgbench run (default 15)
  -h, --help        this text

Environment: PGFLEET_BIN (use this pgfleet binary, do not build).
Needs root (tenants get OS users and cgroups), Debian's postgresql-15 and pgbench.
Progress goes to stderr (==> lines), results to stdout.
EOF
}

SECONDS_PER_RUN=15
while [ $# -gt 0 ]; do
    case "$1" in
    -t | --time) SECONDS_PER_RUN="${2:?$1 needs a value}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done
[[ "$SECONDS_PER_RUN" =~ ^[0-9]+$ ]] && [ "$SECONDS_PER_RUN" -ge 5 ] || { echo "error: --time must be a whole number of seconds, at least 5" >&2; exit 2; }

export LC_ALL=C.UTF-8 LC_NUMERIC=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init noisy
bench_build_pgfleet
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
PSQL=/usr/lib/postgresql/15/bin/psql
[ -x "$PGBENCH" ] || bench_die "pgbench not found at $PGBENCH (Debian's postgresql-15)"

bench_start_daemon "$BENCH_TMP/root" --listen none --pool-size 0 --no-system-bundles
bench_pgfleet bundle import /usr/lib/postgresql/15 >/dev/null
A="noisy-a-$$"
B="quiet-b-$$"
PW_A=""
PW_B=""
bench_create_tenant "$B" PW_B --suspend-after 0
bench_create_tenant "$A" PW_A --suspend-after 0
SOCKET_A="$(bench_tenant_field "$A" socketDirectory)"
SOCKET_B="$(bench_tenant_field "$B" socketDirectory)"

psql_a() { PGPASSWORD="$PW_A" "$PSQL" -X -q -A -t -h "$SOCKET_A" -U postgres -d postgres "$@"; }
export PGHOST="$SOCKET_B" PGUSER=postgres PGDATABASE=postgres PGPASSWORD="$PW_B"
bench_log "initialising pgbench in $B"
"$PGBENCH" -i -s 1 -q >"$BENCH_TMP/pgbench-init.log" 2>&1 || bench_die "pgbench -i failed ($BENCH_TMP/pgbench-init.log)"
psql_a -c "CREATE TABLE junk (id bigint, payload text)" >/dev/null

set_limits() { # on|off
    if [ "$1" = on ]; then
        bench_pgfleet tenant set "$A" --cpu 0.5 --memory 256MB --pids 200 --io-weight 10 >"$BENCH_TMP/limits.out" 2>&1 ||
            bench_die "tenant set $A with limits failed: $(cat "$BENCH_TMP/limits.out")"
    else
        bench_pgfleet tenant set "$A" --cpu none --memory none --pids none --io-weight none >"$BENCH_TMP/limits.out" 2>&1 ||
            bench_die "tenant set $A without limits failed: $(cat "$BENCH_TMP/limits.out")"
    fi
    sed 's/^/    /' "$BENCH_TMP/limits.out" >&2
}

HOG_PIDS=()
start_hog() { # cpu|memory|writer
    local kind="$1" sql i
    local timeout=$((SECONDS_PER_RUN + 5))
    case "$kind" in
    cpu) sql="SELECT sum(i) FROM generate_series(1, 100000000000) i" ;;
    memory) sql="SET work_mem = '2GB'; SELECT count(*) FROM (SELECT g, md5(g::text) || md5((g + 1)::text) AS t FROM generate_series(1, 4000000) g ORDER BY t) s" ;;
    writer) sql="INSERT INTO junk SELECT g, repeat('x', 1000) FROM generate_series(1, 200000) g; CHECKPOINT; TRUNCATE junk" ;;
    esac
    for i in 1 2; do
        # Over and over until stopped: a hog the kernel ends (OOM) comes back, as a real one would.
        (
            end=$((SECONDS + timeout))
            while [ "$SECONDS" -lt "$end" ]; do
                psql_a -c "SET statement_timeout = '${timeout}s'" -c "$sql" >/dev/null 2>&1 || sleep 0.2
            done
        ) &
        HOG_PIDS+=($!)
    done
    sleep 2
}

stop_hogs() {
    local pid
    for pid in "${HOG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    psql_a -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'" >/dev/null 2>&1 || true
    for pid in "${HOG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    HOG_PIDS=()
    # A's postmaster may be recovering from an OOM kill: wait until it answers again.
    local i
    for ((i = 0; i < 600; i++)); do psql_a -c "SELECT 1" >/dev/null 2>&1 && return; sleep 0.1; done
    bench_warn "tenant $A does not answer after its hog stopped"
}
bench_defer stop_hogs

run_b() { # label
    bench_log "pgbench on $B for $SECONDS_PER_RUN s: $1"
    bench_pgbench "$BENCH_TMP/pgbench-$1.log" -c 2 -j 2 -T "$SECONDS_PER_RUN" -n
}

LOAD_BEFORE="$(bench_loadavg)"
ALONE_1="$(run_b alone-1)"
declare -A TPS OOM
for limits in on off; do
    set_limits "$limits"
    for hog in cpu memory writer; do
        kills_before="$(bench_tenant_get "$A" "usage.oomKills // 0" 2>/dev/null || echo 0)"
        start_hog "$hog"
        TPS["$hog-$limits"]="$(run_b "$hog-limits-$limits")"
        stop_hogs
        kills_after="$(bench_tenant_get "$A" "usage.oomKills // 0" 2>/dev/null || echo 0)"
        OOM["$hog-$limits"]=$(( ${kills_after:-0} - ${kills_before:-0} ))
    done
done
ALONE_2="$(run_b alone-2)"
LOAD_AFTER="$(bench_loadavg)"
ALONE="$(awk -v a="$ALONE_1" -v b="$ALONE_2" 'BEGIN {printf "%.0f\n", (a + b) / 2}')"

echo
echo "tenant B's pgbench TPS (2 clients, $SECONDS_PER_RUN s each) beside tenant A's hogs"
printf '%-26s %10s %12s %s\n' "run" "B TPS" "ratio to alone" "A's OOM kills"
printf '%-26s %10s %12s\n' "B alone (start)" "$ALONE_1" "$(bench_ratio "$ALONE_1" "$ALONE")"
for limits in on off; do
    for hog in cpu memory writer; do
        printf '%-26s %10s %12s %s\n' "$hog hog, limits $limits" "${TPS[$hog-$limits]}" "$(bench_ratio "${TPS[$hog-$limits]}" "$ALONE")" "${OOM[$hog-$limits]}"
    done
done
printf '%-26s %10s %12s\n' "B alone (end)" "$ALONE_2" "$(bench_ratio "$ALONE_2" "$ALONE")"
echo
worst="$(for hog in cpu memory writer; do bench_ratio "${TPS[$hog-on]}" "$ALONE"; done | sort -g | head -n1)"
echo "target: B keeps >= 0.80x its alone TPS beside every hog with limits on; worst with limits on: ${worst}x"
echo "load average before $LOAD_BEFORE, after $LOAD_AFTER"
bench_machine
