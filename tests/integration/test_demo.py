"""The README's first command: `qa demo` runs all five services end to end and tells the reader what happened."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qastream_shared.stack import sqlalchemy_url

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_env(tmp_path: Path, database_url: str, kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    # The test stack's servers stand in for the embedded ones; the demo starts the five services itself.
    env = {
        **os.environ,
        "QA_STACK_DIR": str(tmp_path / "stack"),
        "DATABASE_URL": sqlalchemy_url(database_url),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "COLUMNS": "160",
    }
    yield env
    subprocess.run([sys.executable, "-m", "qastream_shared.cli", "down"], env=env, cwd=REPO, timeout=120)


@pytest.mark.timeout(900)  # five services started, 60 conversations through every stage, people simulated
def test_the_demo_runs_every_service_and_explains_what_it_shows(demo_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qastream_shared.cli", "demo", "--limit", "60", "--no-wait"],
        env=demo_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    words = " ".join(out.split())  # rich wraps long lines
    for shown in (
        "AutoQA quality per team",
        "Manual review sample",
        "quota slots are decided when each agent's week closes",  # the pending picks are explained
        "simulated personas",
        "Reporting: quality by who scored it",
        "Web console:",
    ):
        assert shown in words, f"{shown!r} missing from the demo's output:\n{out[-4000:]}"
    for service in ("ingest", "sampler", "scoring", "coaching", "reporting"):
        assert re.search(rf"{service} +http://\S+/docs", out), f"no API docs link for {service}"
