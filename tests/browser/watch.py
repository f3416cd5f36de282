"""What a browser context did, from Playwright's events and the DevTools Protocol; waited on by condition.

- `ContextWatch`: every request and every download of every page of a context, popups included.
- `CorsErrors`: the CORS verdict (`corsErrorStatus.corsError`) of each request a page failed.
- `marked_documents`: the documents (pages, popups, frames) a test script marked as having run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from playwright.async_api import BrowserContext, Download, Error, Page, Request


class _Signal:
    """Wakes every waiter whenever something new is recorded (all on the event loop's thread)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds; False if it did not within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._event.wait()
        except TimeoutError:
            return False
        return True


class ContextWatch:
    """The URLs every page of `context` requested or downloaded, from now on."""

    def __init__(self, context: BrowserContext) -> None:
        self.requests: list[str] = []
        self.downloads: list[str] = []
        self._signal = _Signal()
        context.on("request", self._requested)
        for page in context.pages:
            self._watch(page)
        context.on("page", self._watch)

    def _watch(self, page: Page) -> None:
        page.on("download", self._downloaded)

    def _requested(self, request: Request) -> None:
        self.requests.append(request.url)
        self._signal.notify()

    def _downloaded(self, download: Download) -> None:
        self.downloads.append(download.url)
        self._signal.notify()

    async def first_of(self, *, download: str, request: str, timeout: float) -> str | None:
        """`"download"` or `"request"`: which was seen first; None when neither was within `timeout`."""

        def seen() -> bool:
            return download in self.downloads or request in self.requests

        await self._signal.wait_until(seen, timeout)
        if download in self.downloads:
            return "download"
        return "request" if request in self.requests else None


class CorsErrors:
    """The CORS errors Chromium reports for one page's failed requests (DevTools `Network.loadingFailed`)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._signal = _Signal()

    @classmethod
    async def of(cls, context: BrowserContext, page: Page) -> CorsErrors:
        """Start recording the CORS errors of `page`."""
        watch = cls()
        session = await context.new_cdp_session(page)
        session.on("Network.loadingFailed", watch._failed)
        await session.send("Network.enable")
        return watch

    def _failed(self, params: dict[str, Any]) -> None:
        status = params.get("corsErrorStatus")
        if status:
            self.errors.append(str(status["corsError"]))
            self._signal.notify()

    def mark(self) -> int:
        """A bookmark: how many errors were reported so far."""
        return len(self.errors)

    async def error_since(self, mark: int, timeout: float) -> str | None:
        """The first CORS error reported after `mark`, or None if none was within `timeout` seconds."""
        if await self._signal.wait_until(lambda: len(self.errors) > mark, timeout):
            return self.errors[mark]
        return None


async def marked_documents(context: BrowserContext, marker: str) -> list[str]:
    """URLs of the open documents (pages, popups, frames) whose root element carries `marker`."""
    marked: list[str] = []
    for page in context.pages:
        for frame in page.frames:
            try:
                value = await frame.evaluate(
                    "(marker) => document.documentElement?.getAttribute(marker) ?? null", marker
                )
            except Error:
                # A frame torn down while we asked (a download's frame) has no document left to mark.
                continue
            if value:
                marked.append(frame.url)
    return marked
