#!/usr/bin/env bash
# Connect + `select 1` on a suspended tenant (the proxy wakes it) against a running tenant.
# Run `bench/wake.sh --help` for what it does; it needs root.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/wake.sh [options]

Measures how much waking a suspended tenant adds to a client's first query: connect + `select 1`
through pgfleet's proxy on a suspended tenant against the same on a running tenant, in one run,
and prints p50/p90 of both, what the wake adds at p50 and the ratio. The target is at most 100 ms
added at p50.

  running     tenant wake-r-PID, never suspended: connect + select 1 through the proxy
  suspended   tenant wake-s-PID, suspended before every sample (`pgfleet tenant suspend`, then
              `tenant info --json` until it says "suspended"); the sample's connection wakes it

The samples are interleaved (suspended, running, running, suspended, …), so a slow phase of the
machine hits both. The client is one long-lived python3 process with psycopg (libpq): a sample
is psycopg.connect() until the row of `select 1` arrived, timed in that process with
perf_counter, so neither process start-up nor imports are counted; closing is not timed. Both
tenants are alike (same bundle, settings, no data); the proxy runs with --tls disable and clients
use sslmode=disable.

The daemon rate-limits wakes (per tenant: 5 at once, then one per 2 s), so wakes of the suspended
tenant are at least --gap seconds apart; the tenant sits suspended during that pause.

It uses the release build of pgfleet (built if missing or older than the sources, 5-10 minutes the
first time; PGFLEET_BIN skips that), starts a throwaway daemon and two tenants under /tmp and
removes all of them, and the OS users it created, when it exits (also on Ctrl-C or an error).
A run killed with SIGKILL is swept by the next one.

Options:
  -n, --samples N   samples of each (default 20; env BENCH_SAMPLES)
  -w, --warmup N    untimed samples of each first (default 2)
  -g, --gap S       least seconds between two wakes (default 2.2; the daemon allows one per 2 s)
  -h, --help        this text

Environment: PGFLEET_BIN (use this pgfleet binary, do not build), PYTHON (a python3 with psycopg;
default the python3 on PATH).
Needs root, python3 with psycopg, jq, setpriv. Progress goes to stderr (==> lines), results to stdout.
EOF
}

SAMPLES="${BENCH_SAMPLES:-20}"
WARMUP=2
GAP=2.2

while [ $# -gt 0 ]; do
    case "$1" in
    -n | --samples) SAMPLES="${2:?$1 needs a value}"; shift 2 ;;
    -w | --warmup) WARMUP="${2:?$1 needs a value}"; shift 2 ;;
    -g | --gap) GAP="${2:?$1 needs a value}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done
for value in "$SAMPLES" "$WARMUP"; do
    [[ "$value" =~ ^[0-9]+$ ]] || { printf 'error: %s is not a whole number (see --help)\n' "$value" >&2; exit 2; }
done
[[ "$GAP" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { printf 'error: --gap %s is not a number of seconds\n' "$GAP" >&2; exit 2; }
[ "$SAMPLES" -ge 1 ] || { echo "error: --samples must be at least 1" >&2; exit 2; }

export LC_ALL=C.UTF-8 LC_NUMERIC=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in jq setpriv ss awk; do
    command -v "$tool" >/dev/null || bench_die "$tool is missing"
done
unset PGPASSWORD PGSERVICE PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSSLNEGOTIATION PGPASSFILE

bench_init wake
bench_build_pgfleet
bench_python

PROXY_PORT="$(bench_free_port)"
# No ready pool: its background initdb would only add noise here.
bench_start_daemon "$BENCH_TMP/root" --listen "127.0.0.1:$PROXY_PORT" --tls disable --pool-size 0
SUSPENDED="wake-s-$$"
RUNNING="wake-r-$$"
PW_SUSPENDED=""
PW_RUNNING=""
bench_create_tenant "$RUNNING" PW_RUNNING --suspend-after 0
bench_create_tenant "$SUSPENDED" PW_SUSPENDED --suspend-after 0
PG_VERSION="$(bench_tenant_get "$SUSPENDED" version)"
BUNDLE="$(bench_tenant_get "$SUSPENDED" bundle)"
RUNNING_BUNDLE="$(bench_tenant_get "$RUNNING" bundle)"
[ "$RUNNING_BUNDLE" = "$BUNDLE" ] || bench_die "the two tenants got different bundles ($RUNNING_BUNDLE, $BUNDLE)"
TENANT_LOG="$(bench_tenant_get "$SUSPENDED" logFile)"

bench_timer_start
conninfo() {
    printf 'host=127.0.0.1 port=%s user=postgres@%s dbname=postgres sslmode=disable gssencmode=disable connect_timeout=60 application_name=pgfleet-bench-wake' \
        "$PROXY_PORT" "$1"
}
bench_timer_target suspended "$(conninfo "$SUSPENDED")" PW_SUSPENDED
bench_timer_target running "$(conninfo "$RUNNING")" PW_RUNNING
# The timer has them now.
# shellcheck disable=SC2034 # read through bench_timer_target's PWVAR
PW_SUSPENDED="" PW_RUNNING=""
for target in running suspended; do
    bench_timer_query "$target" >/dev/null || bench_die "cannot connect through the proxy to the $target tenant"
done

# --- one sample of each ---------------------------------------------------------------------------

LAST_WAKE=""
SUSPEND_MS=()
POSTMASTER_MS=()

suspend_tenant() {
    local start state i
    start="$EPOCHREALTIME"
    bench_pgfleet_retry tenant suspend "$SUSPENDED" >/dev/null || bench_die "pgfleet tenant suspend $SUSPENDED failed"
    for ((i = 0; i < 600; i++)); do
        state="$(bench_tenant_get "$SUSPENDED" state)"
        [ "$state" = suspended ] && break
        sleep 0.05
    done
    [ "$state" = suspended ] || bench_die "tenant $SUSPENDED is $state, not suspended, 30 s after tenant suspend"
    SUSPEND_MS+=("$(bench_elapsed_ms "$start")")
}

# How long the last start of the postmaster took by its own log: "starting PostgreSQL" to "ready
# to accept connections" (log_line_prefix starts with %m, milliseconds). Empty if not found.
postmaster_start_ms() {
    awk '/LOG: +starting PostgreSQL/ {start = $2; ready = ""} /LOG: +database system is ready to accept connections/ {ready = $2}
        function secs(t, p) {split(t, p, ":"); return p[1] * 3600 + p[2] * 60 + p[3]}
        END {if (start != "" && ready != "") {d = secs(ready) - secs(start); if (d < 0) d += 86400; printf "%.0f\n", d * 1000}}' "$TENANT_LOG"
}

# Each sets $SAMPLE_MS (they run in this shell: the pacing and the side lists must survive).
sample_suspended() {
    local wait pid_before pid_after state
    pid_before="$(bench_tenant_get "$SUSPENDED" pid)"
    suspend_tenant
    if [ -n "$LAST_WAKE" ]; then
        wait="$(awk -v gap="$GAP" -v since="$(bench_elapsed_ms "$LAST_WAKE")" 'BEGIN {w = gap - since / 1000; printf "%.3f\n", (w > 0) ? w : 0}')"
        sleep "$wait"
    fi
    LAST_WAKE="$EPOCHREALTIME"
    SAMPLE_MS="$(bench_timer_query suspended)" ||
        bench_die "the connection to the suspended tenant failed (rate-limited? try a larger --gap; serve log: $BENCH_TMP/serve.log)"
    state="$(bench_tenant_get "$SUSPENDED" state)"
    pid_after="$(bench_tenant_get "$SUSPENDED" pid)"
    [ "$state" = running ] || bench_die "tenant $SUSPENDED is $state after its wake, not running"
    [ "$pid_after" != "$pid_before" ] || bench_die "tenant $SUSPENDED has the same postmaster (pid $pid_after) as before the suspend: nothing was woken"
    local startup
    startup="$(postmaster_start_ms)"
    [ -n "$startup" ] && POSTMASTER_MS+=("$startup")
    return 0
}

sample_running() {
    SAMPLE_MS="$(bench_timer_query running)" || bench_die "the connection to the running tenant failed"
}

# --- measuring ------------------------------------------------------------------------------------

BUSY_BEFORE="$(bench_busy_note)"
LOAD_BEFORE="$(bench_loadavg)"
if [ "$WARMUP" -gt 0 ]; then
    bench_log "warm-up: $WARMUP untimed sample(s) of each"
    for ((i = 1; i <= WARMUP; i++)); do
        sample_suspended
        sample_running
    done
    SUSPEND_MS=()
    POSTMASTER_MS=()
fi

bench_log "measuring: $SAMPLES samples of each, interleaved; wakes at least $GAP s apart (about $(awk -v n="$SAMPLES" -v g="$GAP" 'BEGIN {printf "%.0f", n * (g + 0.5)}') s)"
RUNNING_MS=()
WAKE_MS=()
for ((i = 1; i <= SAMPLES; i++)); do
    if ((i % 2)); then order=(suspended running); else order=(running suspended); fi
    for variant in "${order[@]}"; do
        if [ "$variant" = suspended ]; then
            sample_suspended
            WAKE_MS+=("$SAMPLE_MS")
        else
            sample_running
            RUNNING_MS+=("$SAMPLE_MS")
        fi
    done
    bench_log "sample $i/$SAMPLES: suspended ${WAKE_MS[-1]} ms, running ${RUNNING_MS[-1]} ms"
done
LOAD_AFTER="$(bench_loadavg)"
BUSY_AFTER="$(bench_busy_note)"

# --- report ---------------------------------------------------------------------------------------

fmt_row() { # LABEL VALUES...
    local label="$1"
    shift
    printf '%-34s %8s %8s %8s %8s\n' "$label" "$(bench_percentile 50 "$@")" "$(bench_percentile 90 "$@")" \
        "$(bench_percentile 0 "$@")" "$(bench_percentile 100 "$@")"
}

P50_RUN="$(bench_percentile 50 "${RUNNING_MS[@]}")"
P50_WAKE="$(bench_percentile 50 "${WAKE_MS[@]}")"
P90_RUN="$(bench_percentile 90 "${RUNNING_MS[@]}")"
P90_WAKE="$(bench_percentile 90 "${WAKE_MS[@]}")"
ADDED="$(awk -v a="$P50_WAKE" -v b="$P50_RUN" 'BEGIN {printf "%.1f\n", a - b}')"
ADDED_P90="$(awk -v a="$P90_WAKE" -v b="$P90_RUN" 'BEGIN {printf "%.1f\n", a - b}')"
RATIO="$(bench_ratio "$P50_WAKE" "$P50_RUN")"
MET="$(awk -v a="$ADDED" 'BEGIN {print (a <= 100) ? "met" : "NOT met"}')"

echo
echo "pgfleet wake benchmark: connect + select 1 through the proxy, $SAMPLES samples each, interleaved (after $WARMUP untimed of each)"
echo "PostgreSQL $PG_VERSION (bundle $BUNDLE); pgfleet serve --tls disable; wakes at least $GAP s apart"
echo "client: $("$BENCH_PYTHON" -c 'import psycopg; print("psycopg %s (libpq %d)" % (psycopg.__version__, psycopg.pq.version()))'), one long-lived python3 process; timed: psycopg.connect() + select 1 (no process start-up, close not timed); sslmode=disable"
echo
printf '%-34s %8s %8s %8s %8s\n' "ms" p50 p90 min max
fmt_row "running tenant" "${RUNNING_MS[@]}"
fmt_row "suspended tenant (woken)" "${WAKE_MS[@]}"
echo
echo "wake adds $ADDED ms p50 over a running tenant (p90: $ADDED_P90 ms); suspended/running p50 ratio: ${RATIO}x"
echo "target: wake adds <= 100 ms at p50: $MET ($ADDED ms)"
echo
if [ "${#POSTMASTER_MS[@]}" -gt 0 ]; then
    echo "for comparison: PostgreSQL's own start-up in the woken tenant's log (\"starting PostgreSQL\" to \"ready to accept connections\"): p50 $(bench_percentile 50 "${POSTMASTER_MS[@]}") ms, p90 $(bench_percentile 90 "${POSTMASTER_MS[@]}") ms"
fi
echo "not in the samples: \`pgfleet tenant suspend\` until \`tenant info\` said suspended (CLI start-ups included): p50 $(bench_percentile 50 "${SUSPEND_MS[@]}") ms"
echo "samples, running (ms):   ${RUNNING_MS[*]}"
echo "samples, suspended (ms): ${WAKE_MS[*]}"
bench_footer
exit 0
