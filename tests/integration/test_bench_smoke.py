"""Every benchmark runs, tiny, against the test stack: a broken bench fails CI instead of the next person
who wants a figure. A new module under bench/ is picked up here and must accept `--tiny`. One at a time:
side by side, on a busy two-core machine, the services they start missed their readiness deadlines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# Not benchmarks: shared helpers, and the pCSAT fit, which writes model.json (it has its own `--check`).
NOT_BENCHES = {"__init__", "common", "pcsat_fit", "pipeline_stack", "pipeline_rate", "commit_observer"}
BENCHES = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in NOT_BENCHES)


def test_every_bench_module_is_found() -> None:
    assert {"ingest", "platform", "sampler", "scoring"} <= set(BENCHES)


@pytest.mark.parametrize("name", BENCHES)
def test_bench_runs_tiny_on_the_stack(name: str, kafka_bootstrap: str, database_url: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--tiny"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # the heaviest tiny runs (reporting, review) take about 4 min on a busy machine
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"bench.{name} failed:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout)  # the bench's one JSON document
    assert isinstance(result, dict) and result
