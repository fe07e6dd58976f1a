from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qastream_shared.conversation import Conversation, Role, Turn
from qastream_shared.scorecard import Category, Group, Scorecard

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def card(*cats: Category, version: int = 1) -> Scorecard:
    """A one-group scorecard holding the given categories."""
    return Scorecard(
        scorecard_id="sc",
        version=version,
        name="t",
        groups=[Group(group_id="g", name="g", categories=list(cats))],
    )


def convo(*turns: tuple[str, str], gap_s: float = 10.0, **kw: object) -> Conversation:
    """A conversation from (role, text) pairs, one turn every gap_s seconds."""
    return Conversation.model_validate(
        {
            "conversation_id": "c1",
            "turns": [
                Turn(role=Role(r), text=t, ts=T0 + timedelta(seconds=i * gap_s))
                for i, (r, t) in enumerate(turns)
            ],
            **kw,
        }
    )


# One request's (path, Authorization header, JSON body) → (HTTP status, the assistant message's content), and
# optionally response headers (e.g. Retry-After).
Reply = Callable[[str, str | None, dict[str, Any]], tuple[int, str] | tuple[int, str, dict[str, str]]]


@contextlib.contextmanager
def chat_endpoint(reply: Reply) -> Iterator[str]:
    """A real local HTTP server speaking the OpenAI chat-completions shape; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, content, *extra = reply(self.path, self.headers.get("Authorization"), body)
            payload = json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": content}}]}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
