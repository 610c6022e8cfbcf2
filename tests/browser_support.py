"""Real Chromium for browser tests, driven by Playwright: Debian's `chromium` (which `.ci/run`
installs), one browser per test session, a fresh context (no cookies) per test.

Without a Chromium the browser tests skip, saying why, except in CI (`CI=true`), where they fail:
CI must prove the members' pages work in a real browser.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Debian's Chromium, or one named by WCT_TEST_CHROMIUM."""
    named = os.environ.get("WCT_TEST_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        _unavailable("no chromium on PATH (apt-get install chromium, or set WCT_TEST_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile: no cookies, phone-sized unless a test resizes it."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        yield context
    finally:
        context.close()
