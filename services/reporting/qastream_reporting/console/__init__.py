"""The web console: server-rendered page shells (Jinja2) whose scripts read and write each owning service's
public API from the browser, with the session cookie every service accepts (qastream_shared.sessions)."""

from qastream_reporting.console.routes import router

__all__ = ["router"]
