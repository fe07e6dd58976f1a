#!/usr/bin/env bash
# Installs everything, starts the local stack (PostgreSQL, Kafka KRaft and the five services) under .qa/
# and runs the demo on the real conversations in ../shared/data; it keeps the stack up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
setup
uv run qa demo "$@"
