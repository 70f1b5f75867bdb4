#!/usr/bin/env bash
# N running idle tenants (memory per tenant) and M registered tenants (the daemon, `tenant list`).
# Run `bench/density.sh --help` for what it does; it needs root.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/density.sh [options]

How densely one host packs tenants, in one run:

  memory     PSS of an idle running tenant: Pss from /proc/PID/smaps_rollup summed over its
             postmaster and the postmaster's children (checkpointer, background writer, walwriter,
             autovacuum launcher, ...), for each of the --running tenants; median and p90 over the
             tenants. Target: at most 12 MB. Baselines measured the same way in the same run:
             - one pgfleet tenant set back to PostgreSQL's defaults for every setting pgfleet sizes
               (`pgfleet tenant set ... --restart`: shared_buffers=128MB, max_connections=100, ...),
               which shares the bundle's binaries with the running tenants as they do;
             - one Debian cluster, `pg_createcluster MAJOR NAME --start` with Debian's defaults.
             Also shown: the part of the PSS that is anonymous or shared memory (Pss_Anon +
             Pss_Shmem), which does not shrink as more clusters share the binaries' pages.
  daemon     `pgfleet serve`'s RSS, PSS, open descriptors, threads and CPU use while idle, with
             no tenant and then with --registered tenants (--running running, the rest suspended).
  list       `pgfleet tenant list` (the CLI, so its start-up counts) wall-clock time, with no tenant
             and then with --registered tenants; also `tenant list --json`, and the daemon's own
             answer to GET /v1/tenants (curl on the API socket). Target: within 100 ms.
  disk       du of a tenant's directory against the Debian cluster's data directory.

Every tenant is real: `pgfleet tenant create` (initdb, its own OS user, a started postmaster),
--jobs at a time. The running ones are created with --suspend-after 0; the others with
--suspend-after 2s, so the daemon's idle check suspends each of them (a clean shutdown) about two
seconds after its creation. A tenant takes about 28 MB of disk (pgfleet initialises clusters with
1 MB WAL segments) and initdb about 1-2 s of CPU: the default 2,000 tenants need about 56 GB and
20-40 minutes on 2 cores. The script checks free disk space and memory first and stops with the
numbers if they do not fit (use smaller --registered / --running).

It uses the release build of pgfleet (built if missing or older than the sources, 5-10 minutes the
first time; PGFLEET_BIN skips that), starts a throwaway daemon under /tmp, and removes it, every
tenant, the Debian cluster and the OS users it created when it exits (also on Ctrl-C or an
error; removing 2,000 tenants takes a few minutes). A run killed with SIGKILL is swept by the next one.

Options:
      --running N      idle running tenants to measure (default 200)
      --registered M   tenants registered in all, the running ones included (default 2000)
  -j, --jobs J         tenants created at a time (default 2)
      --rounds R       memory samples of each cluster, 2 s apart; each cluster's median counts (default 3)
      --list-samples S `tenant list` calls timed, each way (default 15)
      --settle SECS    wait after the last create before measuring (default 20)
      --pg MAJOR       PostgreSQL major version for all (default 15; needs Debian's postgresql-MAJOR)
  -h, --help           this text

Environment: PGFLEET_BIN (use this pgfleet binary, do not build).
Needs root, Debian's postgresql-common (pg_createcluster) and postgresql-MAJOR, jq, curl, setpriv.
Progress goes to stderr (==> lines), results to stdout.
EOF
}

RUNNING=200
REGISTERED=2000
JOBS=2
ROUNDS=3
LIST_SAMPLES=15
SETTLE=20
PG=15
# Disk per tenant for the up-front check (measured: about 28 MB), and what must stay free.
EST_TENANT_MB=30
RESERVE_MB=4096

while [ $# -gt 0 ]; do
    case "$1" in
    --running) RUNNING="${2:?$1 needs a value}"; shift 2 ;;
    --registered) REGISTERED="${2:?$1 needs a value}"; shift 2 ;;
    -j | --jobs) JOBS="${2:?$1 needs a value}"; shift 2 ;;
    --rounds) ROUNDS="${2:?$1 needs a value}"; shift 2 ;;
    --list-samples) LIST_SAMPLES="${2:?$1 needs a value}"; shift 2 ;;
    --settle) SETTLE="${2:?$1 needs a value}"; shift 2 ;;
    --pg) PG="${2:?$1 needs a value}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done
for value in "$RUNNING" "$REGISTERED" "$JOBS" "$ROUNDS" "$LIST_SAMPLES" "$SETTLE" "$PG"; do
    [[ "$value" =~ ^[0-9]+$ ]] || { printf 'error: %s is not a whole number (see --help)\n' "$value" >&2; exit 2; }
done
[ "$RUNNING" -ge 1 ] || { echo "error: --running must be at least 1" >&2; exit 2; }
[ "$REGISTERED" -ge "$RUNNING" ] || { echo "error: --registered ($REGISTERED) counts the running tenants too: it must be at least --running ($RUNNING)" >&2; exit 2; }
if [ "$JOBS" -lt 1 ] || [ "$ROUNDS" -lt 1 ] || [ "$LIST_SAMPLES" -lt 1 ]; then
    echo "error: --jobs, --rounds and --list-samples must be at least 1" >&2
    exit 2
fi
[ "$REGISTERED" -le 9999 ] || { echo "error: --registered is at most 9999" >&2; exit 2; }

export LC_ALL=C.UTF-8 LC_NUMERIC=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in jq curl setpriv ss awk ps psql pg_createcluster pg_dropcluster pg_lsclusters; do
    command -v "$tool" >/dev/null || bench_die "$tool is missing (pg_*: apt-get install postgresql-common postgresql-$PG)"
done
[ -x "/usr/lib/postgresql/$PG/bin/initdb" ] || bench_die "Debian's PostgreSQL $PG is not installed (apt-get install postgresql-$PG)"
id postgres >/dev/null 2>&1 || bench_die "no OS user postgres (Debian's postgresql-common creates it)"
unset PGPASSWORD PGSERVICE PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSSLNEGOTIATION PGPASSFILE

# --- will it fit? ---------------------------------------------------------------------------------

free_mb() { df -Pm "$1" | awk 'NR == 2 {print $4}'; }
NEED_MB=$(((REGISTERED + 2) * EST_TENANT_MB + RESERVE_MB))
FREE_MB="$(free_mb /tmp)"
if [ "$FREE_MB" -lt "$NEED_MB" ]; then
    bench_die "not enough disk space under /tmp: $REGISTERED tenants need about $((REGISTERED * EST_TENANT_MB / 1024)) GB ($EST_TENANT_MB MB each) plus $((RESERVE_MB / 1024)) GB kept free, and $((FREE_MB / 1024)) GB are free; at most about $(((FREE_MB - RESERVE_MB) / EST_TENANT_MB - 2)) tenants fit (--registered)"
fi
MEM_AVAIL_MB="$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)"
NEED_MEM_MB=$((RUNNING * 25 + 1024))
[ "$MEM_AVAIL_MB" -ge "$NEED_MEM_MB" ] ||
    bench_die "not enough memory: $RUNNING running tenants need about $NEED_MEM_MB MB (25 MB each while they start, plus 1 GB), and $MEM_AVAIL_MB MB are available (--running)"

bench_init density
bench_sweep_pgcc
bench_pgcc_cleanup_at_exit "$PG"
bench_build_pgfleet
bench_log "disk: $((FREE_MB / 1024)) GB free under /tmp, about $((REGISTERED * EST_TENANT_MB / 1024)) GB needed; memory: $MEM_AVAIL_MB MB available"

API_SOCKET="$BENCH_TMP/root/run/api.sock"
PROXY_PORT="$(bench_free_port)"
bench_start_daemon "$BENCH_TMP/root" --listen "127.0.0.1:$PROXY_PORT" --tls disable
TENANTS_DIR="$BENCH_TMP/root/tenants"

# Filled by time_list, read by list_row (through namerefs).
# shellcheck disable=SC2034
LIST_CLI_empty=() LIST_JSON_empty=() LIST_API_empty=() LIST_CLI_full=() LIST_JSON_full=() LIST_API_full=()

# --- measuring helpers ----------------------------------------------------------------------------

# daemon_facts: "RSS_KB PSS_KB FDS THREADS" of pgfleet serve.
daemon_facts() {
    local pid="$BENCH_DAEMON_PID"
    printf '%s %s %s %s\n' \
        "$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")" \
        "$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")" \
        "$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)" \
        "$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")"
}

# daemon_cpu SECONDS: the daemon's CPU use over that many seconds, in % of one core.
daemon_cpu() {
    local pid="$BENCH_DAEMON_PID" before after ticks
    ticks="$(getconf CLK_TCK)"
    before="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    sleep "$1"
    after="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
    awk -v a="$before" -v b="$after" -v t="$ticks" -v s="$1" 'BEGIN {printf "%.1f\n", (b - a) / t / s * 100}'
}

# time_cmd_ms CMD...: wall-clock ms of one run (output discarded); fails if the command fails.
time_cmd_ms() {
    local start
    start="$EPOCHREALTIME"
    "$@" >/dev/null 2>>"$BENCH_TMP/timed.err" || return 1
    bench_elapsed_ms "$start"
}

api_list() {
    curl -sf --unix-socket "$API_SOCKET" http://pgfleet/v1/tenants
}

# time_list LABEL: $LIST_SAMPLES timings of each way of listing, into LIST_<way>_<label> arrays.
time_list() {
    local label="$1" i ms
    local -n _tl_cli="LIST_CLI_$label" _tl_json="LIST_JSON_$label" _tl_api="LIST_API_$label"
    _tl_cli=() _tl_json=() _tl_api=()
    for ((i = 0; i < LIST_SAMPLES; i++)); do
        ms="$(time_cmd_ms bench_pgfleet_retry tenant list)" || bench_die "pgfleet tenant list failed ($BENCH_TMP/timed.err)"
        _tl_cli+=("$ms")
        ms="$(time_cmd_ms bench_pgfleet_retry tenant list --json)" || bench_die "pgfleet tenant list --json failed ($BENCH_TMP/timed.err)"
        _tl_json+=("$ms")
        ms="$(time_cmd_ms api_list)" || bench_die "GET /v1/tenants on $API_SOCKET failed"
        _tl_api+=("$ms")
    done
}

# cluster_memory PM...: for each postmaster pid, "PM PSS_KB ANON_SHMEM_KB PROCESSES", summed over
# the postmaster and its children (one ps snapshot for all of them).
cluster_memory() {
    ps -e -o pid=,ppid= | awk -v pms="$*" '
        BEGIN {n = split(pms, list, " "); for (i = 1; i <= n; i++) wanted[list[i]] = 1}
        {if ($2 in wanted) children[$2] = children[$2] " " $1}
        END {
            for (i = 1; i <= n; i++) {
                pm = list[i]; pss = 0; other = 0; procs = 0
                m = split(pm " " children[pm], pids, " ")
                for (j = 1; j <= m; j++) {
                    file = "/proc/" pids[j] "/smaps_rollup"; seen = 0
                    while ((getline line < file) > 0) {
                        split(line, f, " ")
                        if (f[1] == "Pss:") {pss += f[2]; seen = 1}
                        else if (f[1] == "Pss_Anon:" || f[1] == "Pss_Shmem:") other += f[2]
                    }
                    close(file)
                    procs += seen
                }
                print pm, pss, other, procs
            }
        }'
}

# The process titles of a postmaster's children, for the report.
cluster_processes() {
    local pid names=()
    for pid in $(ps -o pid= --ppid "$1"); do
        names+=("$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | sed 's/.*: //; s/ *$//')")
    done
    local IFS=,
    printf 'postmaster,%s\n' "${names[*]}"
}

mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# --- before any tenant: the baselines of the daemon -----------------------------------------------

bench_log "measuring the daemon with no tenant: $LIST_SAMPLES samples of each way of listing"
time_list empty
read -r D0_RSS D0_PSS D0_FDS D0_THREADS < <(daemon_facts)
D0_CPU="$(daemon_cpu 5)"

# --- creating the tenants -------------------------------------------------------------------------

PREFIX="dens-$$"
name_of() { # INDEX (0-based): the first $RUNNING run, the rest are suspended
    if [ "$1" -lt "$RUNNING" ]; then printf '%s-r%04d\n' "$PREFIX" "$1"; else printf '%s-s%04d\n' "$PREFIX" "$1"; fi
}

# create_one NAME SUSPEND_AFTER: tenant create, its password discarded (nothing here connects as
# the tenant). Tried twice; a CLI that failed after a complete answer counts as success.
create_one() {
    local name="$1" after="$2" err="$BENCH_TMP/.state/create-$1.err" attempt state
    _bench_record users "$BENCH_USER_PREFIX$name"
    for attempt in 1 2; do
        if bench_pgfleet tenant create "$name" --pg "$PG" --suspend-after "$after" >/dev/null 2>"$err"; then
            rm -f "$err"
            return 0
        fi
        state="$(bench_tenant_get "$name" state 2>/dev/null || true)"
        case "$state" in running | suspended | stopping)
            rm -f "$err"
            return 0
            ;;
        esac
        [ "$attempt" -eq 2 ] && return 1
        bench_pgfleet tenant drop "$name" --yes >/dev/null 2>&1 || true
    done
}

# creator JOB: creates every JOBS-th tenant, starting at JOB; stops when told to.
creator() {
    local job="$1" i name after
    for ((i = job; i < REGISTERED; i += JOBS)); do
        [ -e "$BENCH_TMP/.state/stop-creating" ] && return 0
        name="$(name_of "$i")"
        if [ "$i" -lt "$RUNNING" ]; then after=0; else after=2s; fi
        if ! create_one "$name" "$after"; then
            echo "$name" >>"$BENCH_TMP/.state/create-failed"
            touch "$BENCH_TMP/.state/stop-creating"
            return 1
        fi
        echo "$name" >>"$BENCH_TMP/.state/created"
    done
}

CREATOR_PIDS=()
# shellcheck disable=SC2317 # called through bench_defer
stop_creators() {
    local pid
    touch "$BENCH_TMP/.state/stop-creating" 2>/dev/null || true
    for pid in "${CREATOR_PIDS[@]}"; do
        # The CLI it waits for first (the daemon finishes that create; the sweep removes it).
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${CREATOR_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    CREATOR_PIDS=()
}
bench_defer stop_creators

created_count() { if [ -f "$BENCH_TMP/.state/created" ]; then wc -l <"$BENCH_TMP/.state/created"; else echo 0; fi; }

bench_log "creating $REGISTERED tenants, $JOBS at a time: $RUNNING running (--suspend-after 0), $((REGISTERED - RUNNING)) suspended 2 s after their creation"
CREATE_START="$EPOCHREALTIME"
for ((job = 0; job < JOBS; job++)); do
    creator "$job" &
    CREATOR_PIDS+=("$!")
done
LAST_REPORT="$EPOCHREALTIME"
while :; do
    alive=0
    for pid in "${CREATOR_PIDS[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
    done_count="$(created_count)"
    if [ -f "$BENCH_TMP/.state/create-failed" ]; then
        stop_creators
        name="$(head -n1 "$BENCH_TMP/.state/create-failed")"
        cat "$BENCH_TMP/.state/create-$name.err" >&2 2>/dev/null || true
        printf -- '--- the last lines of pgfleet serve'"'"'s log:\n' >&2
        tail -n 15 "$BENCH_TMP/serve.log" >&2
        bench_die "tenant create $name failed twice (after $done_count tenants)"
    fi
    if [ "$(free_mb /tmp)" -lt "$RESERVE_MB" ]; then
        stop_creators
        bench_die "stopped after $done_count tenants: less than $((RESERVE_MB / 1024)) GB of disk left under /tmp (use a smaller --registered)"
    fi
    [ "$alive" -eq 1 ] || break
    if [ "$(awk -v s="$(bench_elapsed_ms "$LAST_REPORT")" 'BEGIN {print (s >= 30000)}')" -eq 1 ]; then
        LAST_REPORT="$EPOCHREALTIME"
        elapsed="$(bench_elapsed_ms "$CREATE_START")"
        bench_log "$(awk -v n="$done_count" -v total="$REGISTERED" -v ms="$elapsed" -v free="$(free_mb /tmp)" 'BEGIN {
            rate = n / (ms / 1000); left = (rate > 0) ? (total - n) / rate : 0
            printf "created %d/%d tenants in %.0f s (%.2f/s, about %.0f min left); %.1f GB free", n, total, ms / 1000, rate, left / 60, free / 1024}')"
    fi
    sleep 1
done
for pid in "${CREATOR_PIDS[@]}"; do wait "$pid" || true; done
CREATOR_PIDS=()
CREATE_MS="$(bench_elapsed_ms "$CREATE_START")"
[ "$(created_count)" -eq "$REGISTERED" ] || bench_die "only $(created_count) of $REGISTERED tenants were created"
bench_log "created $REGISTERED tenants in $(awk -v ms="$CREATE_MS" 'BEGIN {printf "%.0f", ms / 1000}') s"

# The baseline tenant: pgfleet's, with PostgreSQL's own defaults for what pgfleet sizes.
PGDEFAULTS="$PREFIX-pgdefaults"
create_one "$PGDEFAULTS" 0 || bench_die "tenant create $PGDEFAULTS failed"
bench_log "setting $PGDEFAULTS back to PostgreSQL's defaults (tenant set --restart)"
bench_pgfleet_retry tenant set "$PGDEFAULTS" shared_buffers=128MB wal_buffers=-1 max_connections=100 max_worker_processes=8 \
    max_logical_replication_workers=4 max_wal_senders=10 max_replication_slots=10 min_wal_size=80MB max_wal_size=1GB \
    --restart >"$BENCH_TMP/pgdefaults-set.log" || bench_die "tenant set $PGDEFAULTS failed (see $BENCH_TMP/pgdefaults-set.log)"

# The baseline cluster: Debian's, defaults, started, one session as the health probe does.
PGCC="$(bench_pgcc_name debian)"
PGCC_PORT="$(bench_free_port)"
bench_log "creating the Debian cluster $PG/$PGCC (pg_createcluster --start)"
pg_createcluster "$PG" "$PGCC" -p "$PGCC_PORT" --start >"$BENCH_TMP/pgcc.log" 2>&1 || {
    tail -n 20 "$BENCH_TMP/pgcc.log" >&2
    bench_die "pg_createcluster $PG $PGCC failed"
}
PGCC_DATA="/var/lib/postgresql/$PG/$PGCC"
bench_as postgres psql -X -q -h /var/run/postgresql -p "$PGCC_PORT" -d postgres -Atc 'select 1' >/dev/null ||
    bench_die "cannot connect to the Debian cluster $PG/$PGCC"

# --- waiting for a quiet fleet --------------------------------------------------------------------

bench_log "waiting until the $((REGISTERED - RUNNING)) tenants created with --suspend-after 2s are suspended"
for ((i = 0; i < 600; i++)); do
    listing="$(bench_pgfleet_retry tenant list --json)"
    read -r N_RUNNING N_SUSPENDED N_OTHER < <(jq -r --arg p "$PREFIX-" '[.[] | select(.name | startswith($p))]
        | "\([.[] | select(.state == "running")] | length) \([.[] | select(.state == "suspended")] | length) \([.[] | select(.state != "running" and .state != "suspended")] | length)"' <<<"$listing")
    [ "$N_SUSPENDED" -eq $((REGISTERED - RUNNING)) ] && [ "$N_OTHER" -eq 0 ] && break
    ((i % 10 == 0)) && bench_log "  running $N_RUNNING, suspended $N_SUSPENDED, other $N_OTHER"
    sleep 1
done
if [ "$N_SUSPENDED" -ne $((REGISTERED - RUNNING)) ] || [ "$N_OTHER" -ne 0 ]; then
    bench_die "after 10 minutes: $N_RUNNING running, $N_SUSPENDED suspended, $N_OTHER in other states"
fi
bench_log "settling for $SETTLE s"
sleep "$SETTLE"

# --- measuring ------------------------------------------------------------------------------------

BUSY_BEFORE="$(bench_busy_note)"
LOAD_BEFORE="$(bench_loadavg)"
listing="$(bench_pgfleet_retry tenant list --json)"
mapfile -t RUN_PIDS < <(jq -r --arg p "$PREFIX-r" '.[] | select((.name | startswith($p)) and .state == "running") | .pid' <<<"$listing")
[ "${#RUN_PIDS[@]}" -eq "$RUNNING" ] || bench_die "expected $RUNNING running tenants, found ${#RUN_PIDS[@]}"
PGDEF_PID="$(jq -r --arg n "$PGDEFAULTS" '.[] | select(.name == $n) | .pid' <<<"$listing")"
PGCC_PID="$(head -n1 "$PGCC_DATA/postmaster.pid")"
# As root, the daemon's user: pg_hba.conf admits it as the pgfleet role by peer authentication.
tenant_show() { # TENANT SETTING
    psql -X -h "$(bench_tenant_get "$1" socketDirectory)" -U pgfleet -d postgres -Atc "show $2" 2>/dev/null || echo "?"
}
PGDEF_SB="$(tenant_show "$PGDEFAULTS" shared_buffers)"
TENANT_SB="$(tenant_show "$(name_of 0)" shared_buffers)"
TENANT_MC="$(tenant_show "$(name_of 0)" max_connections)"

bench_log "memory: $ROUNDS rounds over $RUNNING tenants and the 2 baselines, 2 s apart"
declare -A PSS_OF=() OTHER_OF=() PROCS_OF=()
for ((round = 1; round <= ROUNDS; round++)); do
    while read -r pm pss other procs; do
        PSS_OF[$pm]+=" $pss"
        OTHER_OF[$pm]+=" $other"
        PROCS_OF[$pm]="$procs"
    done < <(cluster_memory "${RUN_PIDS[@]}" "$PGDEF_PID" "$PGCC_PID")
    [ "$round" -lt "$ROUNDS" ] && sleep 2
done
# Each cluster's median over the rounds.
TENANT_PSS=() TENANT_OTHER=() TENANT_PROCS=()
for pm in "${RUN_PIDS[@]}"; do
    # shellcheck disable=SC2086 # lists of numbers
    TENANT_PSS+=("$(bench_percentile 50 ${PSS_OF[$pm]})")
    # shellcheck disable=SC2086
    TENANT_OTHER+=("$(bench_percentile 50 ${OTHER_OF[$pm]})")
    TENANT_PROCS+=("${PROCS_OF[$pm]}")
done
# shellcheck disable=SC2086
PGDEF_PSS="$(bench_percentile 50 ${PSS_OF[$PGDEF_PID]})"
# shellcheck disable=SC2086
PGDEF_OTHER="$(bench_percentile 50 ${OTHER_OF[$PGDEF_PID]})"
# shellcheck disable=SC2086
PGCC_PSS="$(bench_percentile 50 ${PSS_OF[$PGCC_PID]})"
# shellcheck disable=SC2086
PGCC_OTHER="$(bench_percentile 50 ${OTHER_OF[$PGCC_PID]})"

bench_log "the daemon with $REGISTERED tenants: descriptors, memory, 10 s of idle CPU, $LIST_SAMPLES samples of each way of listing"
read -r D1_RSS D1_PSS D1_FDS D1_THREADS < <(daemon_facts)
D1_CPU="$(daemon_cpu 10)"
time_list full
LIST_BYTES="$(api_list | wc -c)"

bench_log "disk: du of 20 suspended tenants' directories and of the Debian cluster's data directory"
DISK_KB=()
for ((i = RUNNING; i < REGISTERED && i < RUNNING + 20; i++)); do
    DISK_KB+=("$(du -sk "$TENANTS_DIR/$(name_of "$i")" | cut -f1)")
done
[ "${#DISK_KB[@]}" -gt 0 ] || DISK_KB+=("$(du -sk "$TENANTS_DIR/$(name_of 0)" | cut -f1)")
PGCC_DISK_KB="$(du -sk "$PGCC_DATA" | cut -f1)"
LOAD_AFTER="$(bench_loadavg)"
BUSY_AFTER="$(bench_busy_note)"

# --- report ---------------------------------------------------------------------------------------

P50="$(bench_percentile 50 "${TENANT_PSS[@]}")"
P90="$(bench_percentile 90 "${TENANT_PSS[@]}")"
OTHER50="$(bench_percentile 50 "${TENANT_OTHER[@]}")"
MET_PSS="$(awk -v k="$P50" 'BEGIN {print (k <= 12 * 1024) ? "met" : "NOT met"}')"
LIST50="$(bench_percentile 50 "${LIST_CLI_full[@]}")"
MET_LIST="$(awk -v ms="$LIST50" 'BEGIN {print (ms <= 100) ? "met" : "NOT met"}')"
VERSION="$(bench_tenant_get "$(name_of 0)" version)"

echo
echo "pgfleet density benchmark: $RUNNING idle running tenants, $REGISTERED registered ($((REGISTERED - RUNNING)) suspended), PostgreSQL $VERSION"
echo "created in $(awk -v ms="$CREATE_MS" 'BEGIN {printf "%.0f", ms / 1000}') s, $JOBS at a time ($(awk -v n="$REGISTERED" -v ms="$CREATE_MS" 'BEGIN {printf "%.2f", n / (ms / 1000)}') tenants/s); measured after $SETTLE s of quiet"
echo
echo "memory of an idle running cluster: PSS summed over the postmaster and its children (MB; each cluster's median of $ROUNDS samples)"
printf '%-52s %8s %8s %8s %8s %14s %6s\n' "" median p90 min max "anon+shmem" procs
printf '%-52s %8s %8s %8s %8s %14s %6s\n' "pgfleet tenant, pgfleet's defaults ($RUNNING)" "$(mb "$P50")" "$(mb "$P90")" \
    "$(mb "$(bench_percentile 0 "${TENANT_PSS[@]}")")" "$(mb "$(bench_percentile 100 "${TENANT_PSS[@]}")")" "$(mb "$OTHER50")" "$(bench_median "${TENANT_PROCS[@]}")"
printf '%-52s %8s %8s %8s %8s %14s %6s\n' "pgfleet tenant, PostgreSQL's defaults (1)" "$(mb "$PGDEF_PSS")" - - - "$(mb "$PGDEF_OTHER")" "${PROCS_OF[$PGDEF_PID]}"
printf '%-52s %8s %8s %8s %8s %14s %6s\n' "pg_createcluster $PG, Debian's defaults (1)" "$(mb "$PGCC_PSS")" - - - "$(mb "$PGCC_OTHER")" "${PROCS_OF[$PGCC_PID]}"
echo
echo "pgfleet's defaults / PostgreSQL's defaults in the same fleet: $(bench_ratio "$P50" "$PGDEF_PSS")x (anon+shmem: $(bench_ratio "$OTHER50" "$PGDEF_OTHER")x)"
echo "pgfleet tenant / pg_createcluster cluster: $(bench_ratio "$P50" "$PGCC_PSS")x (anon+shmem: $(bench_ratio "$OTHER50" "$PGCC_OTHER")x; the Debian cluster shares no binary pages with the tenants, whose bundle is a copy)"
echo "target: <= 12 MB PSS per idle running tenant (median): $MET_PSS ($(mb "$P50") MB)"
echo "a pgfleet tenant (shared_buffers $TENANT_SB, max_connections $TENANT_MC): $(cluster_processes "${RUN_PIDS[0]}")"
echo "the tenant with PostgreSQL's defaults (shared_buffers $PGDEF_SB): $(cluster_processes "$PGDEF_PID")"
echo
echo "the daemon (pgfleet serve)                          no tenant   $REGISTERED registered   ratio"
printf '%-52s %9s %14s %7s\n' "RSS (MB)" "$(mb "$D0_RSS")" "$(mb "$D1_RSS")" "$(bench_ratio "$D1_RSS" "$D0_RSS")"
printf '%-52s %9s %14s %7s\n' "PSS (MB)" "$(mb "$D0_PSS")" "$(mb "$D1_PSS")" "$(bench_ratio "$D1_PSS" "$D0_PSS")"
printf '%-52s %9s %14s %7s\n' "open descriptors" "$D0_FDS" "$D1_FDS" "$(bench_ratio "$D1_FDS" "$D0_FDS")"
printf '%-52s %9s %14s %7s\n' "threads" "$D0_THREADS" "$D1_THREADS" "$(bench_ratio "$D1_THREADS" "$D0_THREADS")"
printf '%-52s %9s %14s %7s\n' "CPU while idle (% of a core; 5 s / 10 s)" "$D0_CPU" "$D1_CPU" -
echo
echo "listing (ms, wall clock; $LIST_SAMPLES samples each)     no tenant p50   $REGISTERED registered p50    p90     max   ratio"
list_row() { # LABEL WAY
    local -n empty="LIST_${2}_empty" full="LIST_${2}_full"
    printf '%-52s %9s %14s %7s %7s %7s\n' "$1" "$(bench_percentile 50 "${empty[@]}")" "$(bench_percentile 50 "${full[@]}")" \
        "$(bench_percentile 90 "${full[@]}")" "$(bench_percentile 100 "${full[@]}")" \
        "$(bench_ratio "$(bench_percentile 50 "${full[@]}")" "$(bench_percentile 50 "${empty[@]}")")"
}
list_row "pgfleet tenant list (the CLI, start-up included)" CLI
list_row "pgfleet tenant list --json" JSON
list_row "GET /v1/tenants (curl on the API socket)" API
echo "target: \`tenant list\` within 100 ms with $REGISTERED tenants (p50): $MET_LIST ($LIST50 ms); the answer is $((LIST_BYTES / 1024)) kB of JSON"
echo
DISK50="$(bench_percentile 50 "${DISK_KB[@]}")"
echo "disk: a suspended tenant's directory $(mb "$DISK50") MB (median of ${#DISK_KB[@]}); the Debian cluster's data directory $(mb "$PGCC_DISK_KB") MB; ratio $(bench_ratio "$DISK50" "$PGCC_DISK_KB")x"
bench_footer
bench_log "removing $REGISTERED tenants and their OS users (a few minutes for thousands)"
exit 0
