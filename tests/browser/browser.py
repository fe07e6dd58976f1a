"""Headless Debian chromium driven by Python playwright, for the console's tests and bench.console."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.stack import LiveStack

CHROMIUM = os.environ.get("QA_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parent / "vendor" / "axe-4.11.0.min.js"
REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("QA_TEST_OUTPUT") or REPO / ".qa" / "test-output") / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `apt-get install -y chromium` (scripts/lib.sh does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Session:
    """One person's browser context (their own cookies), with the page errors it met."""

    def __init__(self, browser: Browser, stack: LiveStack, person: str, viewport: dict[str, int] = DESKTOP):
        self.stack = stack
        self.person = person
        # Axe is injected as an inline script, which the console's CSP (rightly) forbids: only the
        # checking contexts bypass it.
        self.context: BrowserContext = browser.new_context(viewport=viewport, bypass_csp=True)  # type: ignore[arg-type]
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def sign_in(self) -> Page:
        page = self.page
        page.goto(self.stack.console + "/signin")
        page.fill("#api-key", self.stack.keys[self.person])
        page.click("#signin-form button[type=submit]")
        page.wait_for_url(lambda url: "/signin" not in url, timeout=120_000)
        return page

    def open(self, path: str) -> Page:
        self.page.goto(self.stack.console + path)
        self.loaded()
        return self.page

    def loaded(self, at_least: int = 1) -> None:
        """Waits until the page's script says it has drawn its data (body[data-loaded] counts draws)."""
        self.page.wait_for_function(
            "n => Number(document.body.dataset.loaded || 0) >= n", arg=at_least, timeout=120_000
        )

    def shot(self, name: str) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A and AA rules)."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        """async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"""
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
