#!/usr/bin/env bash
# Installs everything, starts a real Kafka (KRaft) + PostgreSQL with the project's launcher, runs the tests.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
setup

# Our own servers, not whatever the machine's environment points at; the fixtures see them through the
# exported variables and QA_STACK_DIR, so fault tests may stop and restart them.
unset KAFKA_BOOTSTRAP_SERVERS DATABASE_URL
export QA_STACK_DIR="$PWD/.qa/test-stack"
trap 'uv run qa down >/dev/null 2>&1 || true' EXIT
phase "start stack" uv run qa up --no-services
eval "$(uv run qa env)"
echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS DATABASE_URL=$DATABASE_URL"

set +e
uv run pytest -q -p no:cacheprovider --durations=30 "$@"
rc=$?
set -e
# pytest's 5 means it collected no tests: that is a failure, not a pass.
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
echo "::: tests: $(($(date +%s) - RUN_START)) s in all"
exit "$rc"
