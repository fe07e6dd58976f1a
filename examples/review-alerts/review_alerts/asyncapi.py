"""The app's AsyncAPI 3.0 document, made by FastStream from its subscribers (their topics, and the payload
models of the handlers' annotations). `asyncapi.json` beside the package is the committed copy:

    uv run python -m review_alerts.asyncapi --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from review_alerts.app import Config, create_app

DOCUMENT = Path(__file__).resolve().parents[1] / "asyncapi.json"


def render() -> str:
    app, _ = create_app(Config())  # the defaults, not this machine's environment
    return json.dumps(app.schema.to_specification().to_jsonable(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOCUMENT.write_text(render())
    else:
        sys.stdout.write(render())
