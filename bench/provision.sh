#!/usr/bin/env bash
# `pgfleet tenant create` until the first `select 1` against Debian's pg_createcluster + first query.
# Run `bench/provision.sh --help` for what it does; it needs root.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/provision.sh [options]

Measures how long a new PostgreSQL cluster takes until it answers its first query, two ways, in
one run, and prints the medians and the ratio. The target: pgfleet's create -> first query at most
150 ms at p50, and at least 15x faster than pg_createcluster.

  pgfleet            `pgfleet tenant create NAME --pg 15` (the CLI against the daemon's API), then
                     connect + `select 1` through pgfleet's proxy as postgres@NAME, with the
                     generated password. The daemon keeps a ready pool (`serve --pool-size`,
                     default 2 here), so a create claims a pre-initialised cluster; before every
                     sample, of either kind, the script waits (untimed) until the pool has
                     refilled, so no background initdb runs while anything is timed
  pg_createcluster   Debian's `pg_createcluster 15 NAME -p PORT --start`, run as root, then
                     connect + `select 1` on its unix socket as postgres (peer authentication)

A sample runs from just before the command starts (its process start-up included: that is what
an operator waits for) until the row of the first successful `select 1` arrived; the query is
retried every 5 ms until it succeeds. One long-lived python3 process with psycopg (libpq) runs
each command and, as soon as it exits, connects: no shell and no client start-up in between, the
same for both kinds. The samples are interleaved, their
order alternating, and every cluster is dropped right after its sample (not timed): `pgfleet
tenant drop`, `pg_dropcluster --stop`.

It also prints where pgfleet's time goes, from the create command's progress lines, each
timestamped as it arrived: CLI and request, until the cluster is claimed from the pool (a
rename; useradd runs meanwhile) or, without one, initialised (useradd, then initdb +
postgres --single + syncfs), configuration files (with a claim also the chown -R to the user id
chosen for the tenant), start until running with the superuser set (useradd finishes meanwhile;
the superuser is set once it has), first query.

It uses the release build of pgfleet (built if missing or older than the sources, 5-10 minutes the
first time; PGFLEET_BIN skips that), starts a throwaway daemon under /tmp, and removes it, every
tenant and cluster it made and the OS users it created when it exits (also on Ctrl-C or an
error). A run killed with SIGKILL is swept by the next one (clusters named pgfleet-bench-PID-*).

Options:
  -n, --samples N   samples of each (default 5; env BENCH_SAMPLES)
  -w, --warmup N    untimed samples of each first (default 1)
      --pool-size N ready clusters the daemon keeps (default 2); 0 measures creates without a pool
      --pg MAJOR    PostgreSQL major version for both (default 15; needs Debian's postgresql-MAJOR)
      --limits L    on (default): each tenant created with --cpu 1 --memory 512MB --pids 200 (its
                    cgroups made and written during the create); off: none
      --sandbox S   on (default): the daemon sandboxes every postmaster (bubblewrap); off
      --disk SIZE   each tenant created with --disk SIZE; the daemon then keeps its ready
                    clusters inside disk images too (serve --pool-disks, the same size as the
                    pool), and the script waits for both pools; default none
  -h, --help        this text

Environment: PGFLEET_BIN (use this pgfleet binary, do not build), PYTHON (a python3 with psycopg;
default the python3 on PATH).
Needs root, Debian's postgresql-common (pg_createcluster) and postgresql-MAJOR, python3 with
psycopg, jq, setpriv. Progress goes to stderr (==> lines), results to stdout.
EOF
}

SAMPLES="${BENCH_SAMPLES:-5}"
WARMUP=1
PG=15
POOL=2
LIMITS=on
SANDBOX=on
DISK=

while [ $# -gt 0 ]; do
    case "$1" in
    -n | --samples) SAMPLES="${2:?$1 needs a value}"; shift 2 ;;
    -w | --warmup) WARMUP="${2:?$1 needs a value}"; shift 2 ;;
    --pg) PG="${2:?$1 needs a value}"; shift 2 ;;
    --pool-size) POOL="${2:?$1 needs a value}"; shift 2 ;;
    --limits) LIMITS="${2:?$1 needs a value}"; shift 2 ;;
    --sandbox) SANDBOX="${2:?$1 needs a value}"; shift 2 ;;
    --disk) DISK="${2:?$1 needs a value}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done
for value in "$SAMPLES" "$WARMUP" "$PG" "$POOL"; do
    [[ "$value" =~ ^[0-9]+$ ]] || { printf 'error: %s is not a whole number (see --help)\n' "$value" >&2; exit 2; }
done
[ "$SAMPLES" -ge 1 ] || { echo "error: --samples must be at least 1" >&2; exit 2; }
for value in "$LIMITS" "$SANDBOX"; do
    [[ "$value" == on || "$value" == off ]] || { printf 'error: --limits and --sandbox take on or off, not %s\n' "$value" >&2; exit 2; }
done
CREATE_LIMITS=()
[ "$LIMITS" = on ] && CREATE_LIMITS=(--cpu 1 --memory 512MB --pids 200)
[ -n "$DISK" ] && CREATE_LIMITS+=(--disk "$DISK")
# With --disk the daemon keeps its ready clusters inside disk images (serve --pool-disks).
POOL_DISKS=0
[ -n "$DISK" ] && POOL_DISKS="$POOL"

export LC_ALL=C.UTF-8 LC_NUMERIC=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in jq setpriv ss awk pg_createcluster pg_dropcluster pg_lsclusters; do
    command -v "$tool" >/dev/null || bench_die "$tool is missing (pg_*: apt-get install postgresql-common postgresql-$PG)"
done
[ -x "/usr/lib/postgresql/$PG/bin/initdb" ] || bench_die "Debian's PostgreSQL $PG is not installed (apt-get install postgresql-$PG)"
id postgres >/dev/null 2>&1 || bench_die "no OS user postgres (Debian's postgresql-common creates it)"
unset PGPASSWORD PGSERVICE PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSSLNEGOTIATION PGPASSFILE

bench_init provision
bench_sweep_pgcc
bench_pgcc_cleanup_at_exit "$PG"
bench_build_pgfleet
bench_python

PROXY_PORT="$(bench_free_port)"
bench_start_daemon "$BENCH_TMP/root" --listen "127.0.0.1:$PROXY_PORT" --tls disable --pool-size "$POOL" --sandbox "$SANDBOX" --pool-disks "$POOL_DISKS"
PREFIX="prov-$$-"
# At exit: whatever a failed or interrupted sample left (each sample drops its own tenant).
# shellcheck disable=SC2317 # called through bench_defer
drop_our_tenants() {
    local name
    [ -n "$BENCH_DAEMON_PID" ] && [ -d "/proc/$BENCH_DAEMON_PID" ] || return 0
    while read -r name; do
        bench_drop_tenant "$name"
    done < <(bench_pgfleet tenant list --json 2>/dev/null | jq -r --arg p "$PREFIX" '.[] | select(.name | startswith($p)) | .name')
}
bench_defer drop_our_tenants
PGCC_VERSION="$("/usr/lib/postgresql/$PG/bin/postgres" --version | awk '{print $3}')"
bench_timer_start

# Until every bundle's ready pool is full and nothing is being initialised (untimed).
POOL_WAITS=()
wait_pool_full() {
    [ "$POOL" -gt 0 ] || return 0
    local i start="$EPOCHREALTIME"
    for ((i = 0; i < 1200; i++)); do
        if bench_pgfleet status --json 2>/dev/null |
            jq -e --argjson n "$POOL" --argjson d "$POOL_DISKS" '((.pool // []) | length > 0 and all(.ready >= $n and (.building | not)))
                and ($d == 0 or ((.diskPool // []) | length > 0 and all(.ready >= $d and (.building | not))))' >/dev/null; then
            POOL_WAITS+=("$(bench_elapsed_ms "$start" "$EPOCHREALTIME")")
            return 0
        fi
        sleep 0.1
    done
    bench_die "the ready pool did not fill within 120 s (see $BENCH_TMP/serve.log)"
}
[ "$POOL" -gt 0 ] && bench_log "waiting for the ready pool ($POOL per bundle) to fill"
wait_pool_full

# --- one sample of each ---------------------------------------------------------------------------

# The time (µs-precision epoch seconds) of the first progress line matching PATTERN, or empty.
stamp_of() {
    awk -F'\t' -v pattern="$2" '$2 ~ pattern {print $1; exit}' "$1"
}

declare -A PHASES=()
PHASE_NAMES=(request osuser cluster configure start query)
declare -A PHASE_LABEL=(
    [request]="CLI start-up and request"
    [osuser]="until the cluster is claimed (useradd starts meanwhile)"
    [cluster]="the claimed cluster's mode; or initdb (no pool)"
    [configure]="configuration files, chown -R (useradd still running)"
    [start]="start until running (waits for useradd), superuser set, answer, CLI exit"
    [query]="first query through the proxy"
)
CLAIMED=0
INITIALISED=0
PGCC_PHASES_CMD=()
PGCC_PHASES_QUERY=()

# "START_US EXIT_US END_US" (µs since the epoch) to seconds.microseconds, as $EPOCHREALTIME.
epoch_of() { printf '%s.%s' "${1:0:-6}" "${1: -6}"; }

# Each sets $SAMPLE_MS. The timer process runs the command and then polls (bench_timer_spawn):
# both kinds of sample pay exactly the same harness costs, and no shell runs in between.
sample_pgfleet() {
    local tag="$1" name="$PREFIX$1" start end stamps result attempts t_osuser t_cluster t_config t_start t_exit
    stamps="$BENCH_TMP/create-$name.stamps"
    # The OS user the daemon will create, recorded first so that a sweep finds it whatever happens.
    _bench_record users "$BENCH_USER_PREFIX$name"
    if ! result="$(bench_timer_spawn 60 "$stamps" '^password for [^:]*: (.*)$' \
        "host=127.0.0.1 port=$PROXY_PORT user=postgres@$name dbname=postgres sslmode=disable gssencmode=disable connect_timeout=10 application_name=pgfleet-bench-provision" "" \
        "$PGFLEET" tenant create "$name" --pg "$PG" "${CREATE_LIMITS[@]}" --root "$BENCH_ROOT")"; then
        printf -- '--- the last lines of pgfleet serve'"'"'s log:\n' >&2
        tail -n 15 "$BENCH_TMP/serve.log" >&2
        bench_die "pgfleet tenant create $name, or its first select 1 through the proxy, failed"
    fi
    read -r start t_exit end attempts <<<"$result"
    start="$(epoch_of "$start")" t_exit="$(epoch_of "$t_exit")" end="$(epoch_of "$end")"
    SAMPLE_MS="$(bench_elapsed_ms "$start" "$end")"
    [ "$attempts" -eq 1 ] || bench_log "  (tenant $name: select 1 succeeded at attempt $attempts)"

    t_osuser="$(stamp_of "$stamps" 'creating OS user')"
    t_cluster="$(stamp_of "$stamps" '^==> (claimed a ready|initialising a new)')"
    t_config="$(stamp_of "$stamps" '^==> configuring')"
    t_start="$(stamp_of "$stamps" '^==> starting')"
    if grep -q $'\t==> claimed a ready' "$stamps"; then CLAIMED=$((CLAIMED + 1)); else INITIALISED=$((INITIALISED + 1)); fi
    if [ -n "$t_osuser" ] && [ -n "$t_cluster" ] && [ -n "$t_config" ] && [ -n "$t_start" ]; then
        PHASES[request]+=" $(bench_elapsed_ms "$start" "$t_osuser")"
        PHASES[osuser]+=" $(bench_elapsed_ms "$t_osuser" "$t_cluster")"
        PHASES[cluster]+=" $(bench_elapsed_ms "$t_cluster" "$t_config")"
        PHASES[configure]+=" $(bench_elapsed_ms "$t_config" "$t_start")"
        PHASES[start]+=" $(bench_elapsed_ms "$t_start" "$t_exit")"
        PHASES[query]+=" $(bench_elapsed_ms "$t_exit" "$end")"
    else
        bench_warn "tenant create $name: progress lines not as expected, no breakdown for this sample"
    fi
    bench_pgfleet_retry tenant drop "$name" --yes >/dev/null || bench_warn "could not drop tenant $name"
}

sample_pgcc() {
    local tag="$1" name port start t_exit end result attempts
    name="$(bench_pgcc_name "$tag")"
    port="$(bench_free_port)"
    if ! result="$(bench_timer_spawn 60 "$BENCH_TMP/pgcc-$name.log" "" \
        "host=/var/run/postgresql port=$port user=postgres dbname=postgres sslmode=disable gssencmode=disable connect_timeout=10 application_name=pgfleet-bench-provision" postgres \
        pg_createcluster "$PG" "$name" -p "$port" --start)"; then
        bench_die "pg_createcluster $PG $name -p $port --start, or its first select 1, failed"
    fi
    read -r start t_exit end attempts <<<"$result"
    start="$(epoch_of "$start")" t_exit="$(epoch_of "$t_exit")" end="$(epoch_of "$end")"
    SAMPLE_MS="$(bench_elapsed_ms "$start" "$end")"
    [ "$attempts" -eq 1 ] || bench_log "  (cluster $name: select 1 succeeded at attempt $attempts)"
    PGCC_PHASES_CMD+=("$(bench_elapsed_ms "$start" "$t_exit")")
    PGCC_PHASES_QUERY+=("$(bench_elapsed_ms "$t_exit" "$end")")
    bench_pgcc_drop "$PG" "$name"
}

# --- measuring ------------------------------------------------------------------------------------

BUSY_BEFORE="$(bench_busy_note)"
LOAD_BEFORE="$(bench_loadavg)"
if [ "$WARMUP" -gt 0 ]; then
    bench_log "warm-up: $WARMUP untimed sample(s) of each"
    for ((i = 1; i <= WARMUP; i++)); do
        wait_pool_full
        sample_pgfleet "w$i"
        bench_log "warm-up $i: pgfleet $SAMPLE_MS ms"
        wait_pool_full
        sample_pgcc "w$i"
        bench_log "warm-up $i: pg_createcluster $SAMPLE_MS ms"
    done
    PHASES=()
    PGCC_PHASES_CMD=()
    PGCC_PHASES_QUERY=()
    POOL_WAITS=()
    CLAIMED=0
    INITIALISED=0
fi

bench_log "measuring: $SAMPLES samples of each, interleaved"
PGFLEET_MS=()
PGCC_MS=()
for ((i = 1; i <= SAMPLES; i++)); do
    if ((i % 2)); then order=(pgfleet pgcc); else order=(pgcc pgfleet); fi
    for variant in "${order[@]}"; do
        wait_pool_full
        if [ "$variant" = pgfleet ]; then
            sample_pgfleet "s$i"
            PGFLEET_MS+=("$SAMPLE_MS")
        else
            sample_pgcc "s$i"
            PGCC_MS+=("$SAMPLE_MS")
        fi
    done
    bench_log "sample $i/$SAMPLES: pgfleet ${PGFLEET_MS[-1]} ms, pg_createcluster ${PGCC_MS[-1]} ms"
done
LOAD_AFTER="$(bench_loadavg)"
BUSY_AFTER="$(bench_busy_note)"

# --- report ---------------------------------------------------------------------------------------

MED_PGFLEET="$(bench_percentile 50 "${PGFLEET_MS[@]}")"
MED_PGCC="$(bench_percentile 50 "${PGCC_MS[@]}")"
SPEEDUP="$(bench_ratio "$MED_PGCC" "$MED_PGFLEET")"
met() { awk -v ok="$1" 'BEGIN {print ok ? "met" : "NOT met"}'; }
MET_ABS="$(met "$(awk -v a="$MED_PGFLEET" 'BEGIN {print (a <= 150)}')")"
MET_REL="$(met "$(awk -v r="$SPEEDUP" 'BEGIN {print (r >= 15)}')")"

echo
echo "pgfleet provisioning benchmark: a new cluster until its first select 1 succeeds, $SAMPLES samples each, interleaved (after $WARMUP untimed of each)"
echo "pgfleet: PostgreSQL $(bench_pgfleet bundle list --json 2>/dev/null | jq -r --arg pg "$PG" '[.[] | select(.major == ($pg | tonumber))][0] | "\(.version) (bundle \(.id))"'), select 1 through the proxy (--tls disable); pg_createcluster: Debian's PostgreSQL $PGCC_VERSION, select 1 on its unix socket"
if [ "$POOL" -gt 0 ]; then
    echo "pgfleet's ready pool: $POOL per bundle (serve --pool-size $POOL); $CLAIMED timed create(s) claimed a pooled cluster, $INITIALISED initialised a new one; refilled before every sample (waits, untimed, median $(bench_percentile 50 "${POOL_WAITS[@]}") ms)"
else
    echo "pgfleet's ready pool: off (serve --pool-size 0): every create runs initdb"
fi
echo "pgfleet's tenants: sandbox $SANDBOX (serve --sandbox), limits $LIMITS${CREATE_LIMITS[*]:+ (${CREATE_LIMITS[*]})}; disk quota ${DISK:-none}"
echo "client: $("$BENCH_PYTHON" -c 'import psycopg; print("psycopg %s (libpq %d)" % (psycopg.__version__, psycopg.pq.version()))'), one long-lived python3 process, retrying every 5 ms; the commands' own process start-up is counted, sslmode=disable"
echo
printf '%-50s %9s %8s %8s   %s\n' "ms" median min max samples
printf '%-50s %9s %8s %8s   %s\n' "pgfleet tenant create -> select 1 (proxy)" "$MED_PGFLEET" \
    "$(bench_percentile 0 "${PGFLEET_MS[@]}")" "$(bench_percentile 100 "${PGFLEET_MS[@]}")" "${PGFLEET_MS[*]}"
printf '%-50s %9s %8s %8s   %s\n' "pg_createcluster --start -> select 1 (socket)" "$MED_PGCC" \
    "$(bench_percentile 0 "${PGCC_MS[@]}")" "$(bench_percentile 100 "${PGCC_MS[@]}")" "${PGCC_MS[*]}"
echo
echo "pgfleet is ${SPEEDUP}x as fast as pg_createcluster (median against median)"
echo "target: create -> first query <= 150 ms at p50: $MET_ABS ($MED_PGFLEET ms); >= 15x faster than pg_createcluster: $MET_REL (${SPEEDUP}x)"
echo
if [ -n "${PHASES[request]:-}" ]; then
    echo "where pgfleet's time goes (medians, ms; from the create command's progress lines as they arrived):"
    for phase in "${PHASE_NAMES[@]}"; do
        # shellcheck disable=SC2086 # a list of numbers
        printf '  %-58s %8s\n' "${PHASE_LABEL[$phase]}" "$(bench_percentile 50 ${PHASES[$phase]})"
    done
fi
echo "pg_createcluster (medians, ms): the command $(bench_percentile 50 "${PGCC_PHASES_CMD[@]}"), then the first query $(bench_percentile 50 "${PGCC_PHASES_QUERY[@]}")"
bench_footer
exit 0
