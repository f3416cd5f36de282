"""Debian's headless Chromium, driven through Playwright (which never downloads a browser of its own here).

    async with launch_chromium() as browser:
        page = await browser.new_page()

`make setup` installs Debian's `chromium` package; without it `launch_chromium` raises
`ChromiumMissingError`, which the tests turn into a failure (never a skip), so a machine that
lacks the browser cannot pass the suite by accident.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM_ENV = "CONVEX_OFFLOAD_CHROMIUM"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")

# Playwright adds --headless, --no-sandbox (no sandbox as root) and a fresh --user-data-dir itself.
# The rest keep Chromium off the network this machine does not have: no background fetches,
# component updates, sync or QUIC, none of which a page under test needs.
FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ChromiumMissingError(RuntimeError):
    """No Chromium executable where the tests look for it."""


def chromium_path() -> Path:
    """The Chromium to drive: $CONVEX_OFFLOAD_CHROMIUM, else Debian's /usr/bin/chromium."""
    path = Path(os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ChromiumMissingError(
            f"no Chromium at {path}: run `make setup` (it installs Debian's chromium package) "
            f"or point {CHROMIUM_ENV} at a Chromium executable"
        )
    return path


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for the duration of the block; closed (with its driver) afterwards."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()
