#!/usr/bin/env bash
# Installs everything, starts the local stack (PostgreSQL, Kafka KRaft, ingest, sampler, scoring) under .qa/
# and runs the demo on the real conversations in ../shared/data. `uv run qa down` stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
setup
uv run qa demo "$@"
