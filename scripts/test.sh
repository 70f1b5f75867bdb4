#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against real PostgreSQL servers
# (these need root: tenants get their own OS users).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
printf '==> building\n' >&2
swift build --build-tests
printf '==> testing\n' >&2
swift test --skip-build "$@"
