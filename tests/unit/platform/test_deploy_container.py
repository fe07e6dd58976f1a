"""The image and docker-compose.yml, checked without a Docker engine: hadolint, the compose schema, and
`docker compose config` where the compose plugin exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qastream_shared.services import SERVICES

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
PIPELINE = ("ingest", "sampler", "scoring", "coaching", "reporting")


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_dockerfile_passes_hadolint():
    out = subprocess.run([tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_is_multi_stage_non_root_from_the_lock_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert "uv sync --frozen --no-dev" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    assert re.search(r'^ENTRYPOINT \["qa"\]', text, re.M)
    # uv reads the whole workspace from the lock: every member's pyproject must be copied before the sync.
    for member in ["packages/qastream-events", "shared", *(f"services/{s}" for s in PIPELINE)]:
        assert f"COPY {member}/pyproject.toml {member}/" in text


def test_compose_file_matches_the_compose_specification():
    out = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_docker_compose_config_accepts_it():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose client here; the schema test covers the file")
    out = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_compose_runs_every_service_after_the_migration_job():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(SERVICES) <= set(PIPELINE)
    assert services["migrate"]["command"] == ["migrate"]
    for dep in ("kafka", "postgres"):
        assert services["migrate"]["depends_on"][dep]["condition"] == "service_healthy"
        assert "healthcheck" in services[dep]
    for name in PIPELINE:
        svc = services[name]
        assert svc["command"] == ["serve", name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    named = set(compose["volumes"])
    mounted = {
        v.split(":")[0] for s in services.values() for v in s.get("volumes", ()) if not v.startswith(".")
    }
    assert mounted <= named
    assert {"otel-collector", "prometheus", "grafana"} == {
        n for n, s in services.items() if "observability" in s.get("profiles", ())
    }
