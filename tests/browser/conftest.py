"""Headless Chromium from Debian's package, driven by Playwright's sync API.

Playwright's own browser builds are never used or downloaded: the context is
launched with ``executable_path`` set to Debian's ``/usr/bin/chromium``
(``make system-deps`` installs it), with a fresh profile under the test's
``tmp_path``. Only Playwright's bundled driver runs beside it. Playwright
fetches browsers only in ``playwright install``, which nothing here runs; the
Makefile also sets ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1`` for the pip install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Every Playwright wait is bounded: 10 s unless a test says otherwise.
expect.set_options(timeout=10_000)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """A Chromium context with its own user-data dir; closed (and its processes gone) after."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (make system-deps)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 640},
            timeout=30_000,
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            context.close()
