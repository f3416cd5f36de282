"""The "urls" restore mode in a real browser: Debian's headless Chromium, driven through Playwright.

A test web site on loopback (`browser.site.Site`, the "app") serves pages built from what
`OffloadingStore.with_restore_mode("urls")` hands a web UI for messages saved through the store,
and Chromium loads them:

- images offloaded to LocalStack (presigned URLs) and to Convex file storage (storage URLs) decode
  in `<img>` tags, at their own sizes;
- SVG and HTML attachments carrying a `<script>` never run it, however the app opens them
  (`<img src>`, link navigation, `window.open`, `<iframe>`): the script would hit a beacon on the
  app's own site and mark its document; a positive control runs the same files from a plain web
  server to show that both side effects do happen when a script runs. From S3/LocalStack it holds;
  from Convex file storage it does not yet (strict xfails: a Convex storage URL serves HTML/SVG as
  uploaded, with no Content-Disposition, so it opens as a document and its script runs);
- a bucket seeded with the app's origin as its CORS rule (the `cors_origins` of its BucketConfig)
  lets the app's page `fetch()` an object and refuses a page of another origin.

A missing Chromium fails these tests (`make setup` installs Debian's package); they never skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page

from browser.chromium import ChromiumMissingError, launch_chromium
from browser.site import Site
from browser.watch import ContextWatch, CorsErrors, marked_documents
from conftest import s3_bucket
from convex_offload.config import BucketConfig, OffloadConfig, RoutingRule
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import BucketSpec, LocalStack
from convex_offload.doctor import check_cors
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message
from media import MIME, b64, data_url, image_bytes

# Generous bounds on waiting for something the browser does; a test never waits this long when it passes.
WAIT_SECONDS = 30.0
WAIT_MS = WAIT_SECONDS * 1000
CONVEX_TENANTS = "on-convex-*"
Provider = Literal["s3", "convex"]
PROVIDERS: tuple[Provider, ...] = ("s3", "convex")


# -- the app's site, the browser, the store --------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> Iterator[Site]:
    """The web app's own site: its pages, and the beacon a script would hit."""
    with Site() as site:
        yield site


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[Site]:
    """A site of another origin (another port)."""
    with Site() as site:
        yield site


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium; its absence fails the tests (CI must have it)."""
    try:
        async with launch_chromium() as chromium:
            yield chromium
    except ChromiumMissingError as exc:
        pytest.fail(str(exc))


@asynccontextmanager
async def fresh_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (cookies, cache); downloads are accepted, never opened."""
    ctx = await browser.new_context(accept_downloads=True)
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile for one test."""
    async with fresh_context(browser) as ctx:
        yield ctx


@pytest.fixture
async def other_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A second fresh profile: another user, whose browser cache the first one's pages cannot fill."""
    async with fresh_context(browser) as ctx:
        yield ctx


@pytest.fixture
async def ui(localstack: LocalStack, local_convex: LocalConvex) -> AsyncIterator[OffloadingStore]:
    """An OffloadingStore offloading every payload: to LocalStack, or to Convex files for `on-convex-*`."""
    config = OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={
            "s3": s3_bucket(localstack, "images", prefix="browser/"),
            "files": BucketConfig(provider="convex"),
        },
        default_bucket="s3",
        rules=[RoutingRule(bucket="files", tenants=[CONVEX_TENANTS])],
        inline_threshold=0,
    )
    async with OffloadingStore.connect(config) as store:
        yield store


def tenant_on(provider: Provider) -> str:
    """A fresh resource id whose attachments the `ui` store routes to `provider`."""
    return f"on-{provider}-{uuid.uuid4().hex[:12]}"


async def save_and_show(store: OffloadingStore, resource: str, content: dict[str, Any]) -> dict[str, Any]:
    """Save one message through `store`, then read it back as a web UI does (restore mode "urls")."""
    message = Message(
        id=f"m-{uuid.uuid4().hex[:12]}",
        thread_id=f"t-{uuid.uuid4().hex[:12]}",
        resource_id=resource,
        role="user",
        content=content,
    )
    await store.memory.save_messages([message])
    [shown] = await store.with_restore_mode("urls").memory.list_messages_by_id([message.id])
    restored: dict[str, Any] = shown.content
    return restored


def assert_served_by(url: str, provider: Provider, localstack: LocalStack, local_convex: LocalConvex) -> None:
    """`url` is a fresh presigned LocalStack URL, or a Convex storage URL of the local Convex server."""
    if provider == "s3":
        assert url.startswith(f"{localstack.endpoint_url}/images/browser/"), url
        assert "X-Amz-Signature=" in url, url
    else:
        assert url.startswith(f"{local_convex.url}/api/storage/"), url


def page_of(body: str, title: str = "app") -> str:
    """A whole HTML document around `body`."""
    head = f"<meta charset=utf-8><title>{title}</title>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


async def open_page(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    return page


# -- images ----------------------------------------------------------------------------------------------


def image_message(seed: int) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """A message with three images where Mastra keeps them, and each image's (width, height).

    A PNG as a file part's raw base64 (Core's image input), a JPEG as a file part's data URL and a
    WebP in `experimental_attachments` (AI SDK shapes).
    """
    png, jpeg, webp = (
        image_bytes(kind, 40_000 + 9_000 * i, seed=seed + i) for i, kind in enumerate(("png", "jpeg", "webp"))
    )
    sizes = [Image.open(io.BytesIO(data)).size for data in (png, jpeg, webp)]
    content = {
        "format": 2,
        "parts": [
            {"type": "text", "text": "three pictures"},
            {"type": "file", "mimeType": MIME["png"], "data": b64(png)},
            {"type": "file", "mimeType": MIME["jpeg"], "data": data_url(jpeg, MIME["jpeg"])},
        ],
        "experimental_attachments": [
            {"name": "c.webp", "contentType": MIME["webp"], "url": data_url(webp, MIME["webp"])}
        ],
    }
    return content, sizes


def image_urls(content: dict[str, Any]) -> list[str]:
    """Where a chat UI finds each image of an `image_message` after a "urls" read."""
    return [
        content["parts"][1]["data"],
        content["parts"][2]["data"],
        content["experimental_attachments"][0]["url"],
    ]


READ_IMAGES = """async () => Promise.all(Array.from(document.images, async (img) => {
    let decoded = true;
    try { await img.decode(); } catch { decoded = false; }
    return {id: img.id, width: img.naturalWidth, height: img.naturalHeight, decoded};
}))"""


async def test_offloaded_images_decode_in_img_tags_from_s3_and_convex_urls(
    ui: OffloadingStore, app: Site, context: BrowserContext, localstack: LocalStack, local_convex: LocalConvex
) -> None:
    expected: dict[str, tuple[int, int]] = {}
    tags: list[str] = []
    for seed, provider in enumerate(PROVIDERS):
        content, sizes = image_message(seed=100 + 10 * seed)
        shown = await save_and_show(ui, tenant_on(provider), content)
        for index, (url, size) in enumerate(zip(image_urls(shown), sizes, strict=True)):
            assert_served_by(url, provider, localstack, local_convex)
            tag_id = f"{provider}-{index}"
            expected[tag_id] = size
            tags.append(f'<img id="{tag_id}" src="{html.escape(url)}" alt="">')
    gallery = app.publish(f"/gallery-{uuid.uuid4().hex[:8]}.html", page_of("\n".join(tags)))

    page = await open_page(context, gallery)
    await page.wait_for_function("() => Array.from(document.images).every((img) => img.complete)")
    shown_images = await page.evaluate(READ_IMAGES)

    assert {img["id"]: (img["width"], img["height"]) for img in shown_images} == expected
    assert all(img["decoded"] for img in shown_images), shown_images
    assert len(expected) == 6, "three images from each provider"


# -- active content --------------------------------------------------------------------------------------

Kind = Literal["svg", "html"]
Opening = Literal["img", "link", "window_open", "iframe"]
MARKER = "data-script-ran"
ACTIVE_CASES: list[tuple[Kind, Opening]] = [
    ("svg", "img"),
    ("svg", "link"),
    ("svg", "window_open"),
    ("svg", "iframe"),
    ("html", "link"),
    ("html", "window_open"),
    ("html", "iframe"),
]


class ScriptRanError(AssertionError):
    """An attachment's script ran, or the browser showed the file as a document instead of saving it."""


def active_file(kind: Kind, beacon: str) -> bytes:
    """An SVG or HTML file whose script marks its own document, retitles it and hits `beacon`."""
    script = (
        f"document.documentElement.setAttribute('{MARKER}', 'yes');"
        " document.title = 'script ran';"
        f" fetch('{beacon}', {{mode: 'no-cors', keepalive: true}});"
    )
    if kind == "svg":
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30" viewBox="0 0 40 30">'
            '<title>drawing</title><rect width="40" height="30" fill="teal"/>'
            f"<script>//<![CDATA[\n{script}\n//]]></script></svg>"
        ).encode()
    return (
        "<!DOCTYPE html><html><head><title>document</title>"
        f"<script>{script}</script></head><body>hello</body></html>"
    ).encode()


def active_message(kind: Kind, beacon: str) -> dict[str, Any]:
    mime = "image/svg+xml" if kind == "svg" else "text/html"
    return {
        "format": 2,
        "parts": [{"type": "file", "mimeType": mime, "data": b64(active_file(kind, beacon))}],
    }


async def open_as_the_app_would(page: Page, opening: Opening, url: str) -> None:
    """Open `url` from the app's `page`: as an image, a clicked link, a `window.open` popup or an iframe."""
    if opening == "img":
        await page.evaluate(
            """(url) => new Promise((resolve) => {
                const img = document.createElement('img');
                img.onload = img.onerror = () => resolve();
                img.src = url;
                document.body.append(img);
            })""",
            url,
        )
    elif opening == "link":
        await page.evaluate(
            """(url) => { const a = document.createElement('a');
                a.id = 'open'; a.href = url; a.textContent = 'open'; document.body.append(a); }""",
            url,
        )
        await page.click("#open")
    elif opening == "iframe":
        await page.evaluate(
            "(url) => { const f = document.createElement('iframe'); f.src = url; document.body.append(f); }",
            url,
        )
    else:
        async with page.expect_popup():
            await page.evaluate("(url) => { window.open(url); }", url)


def active_cases() -> Iterator[Any]:
    for provider in PROVIDERS:
        for kind, opening in ACTIVE_CASES:
            yield pytest.param(provider, kind, opening, id=f"{provider}-{kind}-{opening}")


@pytest.mark.parametrize(("provider", "kind", "opening"), list(active_cases()))
async def test_active_attachments_never_run_their_script(
    ui: OffloadingStore,
    app: Site,
    context: BrowserContext,
    localstack: LocalStack,
    local_convex: LocalConvex,
    provider: Provider,
    kind: Kind,
    opening: Opening,
) -> None:
    beacon = f"{provider}-{kind}-{opening}-{uuid.uuid4().hex[:8]}"
    url = (await save_and_show(ui, tenant_on(provider), active_message(kind, app.beacon_url(beacon))))[
        "parts"
    ][0]["data"]
    assert_served_by(url, provider, localstack, local_convex)
    watch = ContextWatch(context)
    page = await open_page(context, app.publish(f"/chat-{beacon}.html", page_of("<p>chat</p>")))

    await open_as_the_app_would(page, opening, url)
    # A link, popup or frame must end in a download: once the browser saves the file, none of it runs.
    # (An <img> never runs an SVG's script; the image loaded or failed before open_as_the_app_would returned.)
    first = None
    if opening != "img":
        first = await watch.first_of(download=url, request=app.beacon_url(beacon), timeout=WAIT_SECONDS)
    marked = await marked_documents(context, MARKER)
    # The page's own request, sent once the opening settled, arrives; a script's beacon before it never did.
    sentinel = f"sentinel-{beacon}"
    await page.evaluate("(url) => fetch(url, {mode: 'no-cors'})", app.beacon_url(sentinel))
    assert await asyncio.to_thread(app.wait_for_hit, sentinel, WAIT_SECONDS)
    ran = beacon in app.hits()
    if ran or marked or (opening != "img" and first != "download"):
        raise ScriptRanError(
            f"{kind} from {provider} opened by {opening}: beacon hit {ran}, documents marked {marked}, "
            f"first seen {first!r} (a download was expected)"
        )
    assert await page.title() == "app"
    assert page.url.startswith(app.origin), "the app's page was not navigated away"


@pytest.mark.parametrize(("kind", "opening"), [case for case in ACTIVE_CASES if case[1] != "img"])
async def test_control_the_same_files_served_as_pages_do_run_their_script(
    app: Site, elsewhere: Site, context: BrowserContext, kind: Kind, opening: Opening
) -> None:
    """Without the bucket's defences the beacon and the mark do appear: the checks above can fail."""
    beacon = f"control-{kind}-{opening}-{uuid.uuid4().hex[:8]}"
    mime = "image/svg+xml" if kind == "svg" else "text/html"
    url = elsewhere.publish(f"/{beacon}.{kind}", active_file(kind, app.beacon_url(beacon)), mime)
    watch = ContextWatch(context)
    page = await open_page(context, app.publish(f"/chat-{beacon}.html", page_of("<p>chat</p>")))

    await open_as_the_app_would(page, opening, url)

    assert await asyncio.to_thread(app.wait_for_hit, beacon, WAIT_SECONDS), "the script's beacon arrived"
    assert url in await marked_documents(context, MARKER)
    assert watch.downloads == []


# -- CORS -------------------------------------------------------------------------------------------------

CORS_BUCKET = "browser-cors"

FETCH_SHA256 = """async ([url, headers]) => {
    try {
        const response = await fetch(url, {headers});
        const digest = await crypto.subtle.digest('SHA-256', await response.arrayBuffer());
        const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
        return {ok: response.ok, status: response.status, sha256: hex};
    } catch (error) {
        return {error: `${error.name}: ${error.message}`};
    }
}"""

FETCH_OPAQUE = "async (url) => (await fetch(url, {mode: 'no-cors'})).type"


@pytest.fixture(scope="module")
def cors_localstack(app: Site) -> Iterator[LocalStack]:
    """LocalStack with one bucket whose CORS rule (seeded at start) names the app's origin."""
    with LocalStack(buckets=[BucketSpec(CORS_BUCKET, cors_allowed_origins=(app.origin,))]) as server:
        yield server


@pytest.fixture
async def cors_store(
    cors_localstack: LocalStack, local_convex: LocalConvex, app: Site
) -> AsyncIterator[OffloadingStore]:
    config = OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={"cors": s3_bucket(cors_localstack, CORS_BUCKET, cors_origins=[app.origin])},
        inline_threshold=0,
    )
    async with OffloadingStore.connect(config) as store:
        yield store


async def test_bucket_cors_lets_the_apps_origin_fetch_and_refuses_another(
    cors_store: OffloadingStore,
    app: Site,
    elsewhere: Site,
    context: BrowserContext,
    other_context: BrowserContext,
) -> None:
    assert (await check_cors(cors_store.buckets["cors"], cors_store.config.buckets["cors"])).status == "ok", (
        "the bucket's rules match its config"
    )
    png = image_bytes("png", 30_000, seed=300)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": MIME["png"], "data": b64(png)}]}
    url = (await save_and_show(cors_store, f"cors-{uuid.uuid4().hex[:8]}", content))["parts"][0]["data"]
    assert url.startswith(f"{cors_store.config.buckets['cors'].endpoint_url}/{CORS_BUCKET}/")
    assert "X-Amz-Signature=" in url
    fetched = {"ok": True, "status": 200, "sha256": hashlib.sha256(png).hexdigest()}
    blank = page_of("<p>blank</p>")
    ours = await open_page(context, app.publish("/cors.html", blank))
    theirs = await open_page(other_context, elsewhere.publish("/cors.html", blank))
    refusals = await CorsErrors.of(other_context, theirs)
    # A chat shows the image first, then fetches it. An app that does both marks the image
    # `crossorigin`: a plain <img> response carries no CORS headers, S3 does not answer it with
    # `Vary: Origin`, and the browser may serve the later fetch() from that cached response.
    await ours.evaluate(
        """(url) => new Promise((resolve) => {
            const img = document.createElement('img');
            img.crossOrigin = 'anonymous';
            img.onload = img.onerror = () => resolve();
            img.src = url;
            document.body.append(img);
        })""",
        url,
    )

    # A simple GET, then one whose custom header makes the browser ask the bucket first (a preflight).
    for headers, verdict in (
        ({}, "MissingAllowOriginHeader"),
        ({"x-app": "chat"}, "PreflightMissingAllowOriginHeader"),
    ):
        assert await ours.evaluate(FETCH_SHA256, [url, headers]) == fetched, headers
        mark = refusals.mark()
        assert await theirs.evaluate(FETCH_SHA256, [url, headers]) == {"error": "TypeError: Failed to fetch"}
        assert await refusals.error_since(mark, WAIT_SECONDS) == verdict, headers
    assert await theirs.evaluate(FETCH_OPAQUE, url) == "opaque", "the object is there: reading it is refused"
