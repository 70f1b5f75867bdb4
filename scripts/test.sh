#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against real PostgreSQL servers
# (these need root: tenants get their own OS users; without root they fail rather than skip, unless
# PGFLEET_SKIP_INTEGRATION=1 leaves them out on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
printf '==> building\n' >&2
swift build --build-tests
# The client-facing parser under libFuzzer, for a bounded time (FUZZ_SECONDS, default 60; 0 skips).
if [ "${FUZZ_SECONDS:-60}" != 0 ]; then
    printf '==> fuzzing the wire codec\n' >&2
    ./scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
printf '==> testing\n' >&2
# The isolation suites spin CPUs, fill memory and disks, exhaust descriptors on purpose: they run on their own after
# the rest, whose timing-sensitive checks (wakes, suspends, interrupted creates) they would disturb.
isolation='LimitsIntegrationTests|SandboxRecipeTests|TenantDiskTests|DiskQuotaIntegrationTests|ShmIntegrationTests|DescriptorIntegrationTests'
# The huge page tests change vm.nr_hugepages, which every tenant's `--huge-pages try` reads:
# they run alone, last.
hostwide='HugePagesIntegrationTests'
if [ $# -gt 0 ]; then
    swift test --skip-build "$@"
else
    swift test --skip-build --skip "$isolation|$hostwide"
    swift test --skip-build --filter "$isolation"
    swift test --skip-build --filter "$hostwide"
fi
