"""`qa` starts without importing any service's app: each service's commands load it when they run."""

from __future__ import annotations

import subprocess
import sys

from qastream_shared.services import SERVICES

# Builds every command and sub-command (as `qa --help` does), then lists the service modules it loaded.
PROBE = """
import sys
from typer.main import get_command
from qastream_shared.cli import app
group = get_command(app)
assert {"samples", "rescore", "reporting", "tenant", "key", "import"} <= set(group.commands), group.commands
print(" ".join(sorted(m for m in sys.modules if m.startswith("qastream_"))))
"""


def test_building_the_cli_imports_no_service_app() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=300
    )
    loaded = set(out.stdout.split())
    apps = {f"qastream_{name}.app" for name in SERVICES}
    assert loaded, out.stderr  # the probe ran
    assert not loaded & apps, sorted(loaded & apps)
    # What the apps pull in (their HTTP APIs and the consumer runtime) stays out as well.
    assert not {m for m in loaded if m.endswith(".api") or m == "qastream_shared.runtime"}, sorted(loaded)
