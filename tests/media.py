"""Real media bytes made in the tests: PNG, JPEG, WebP and PDF from Pillow, of a chosen size."""

from __future__ import annotations

import base64
import io
import random

from PIL import Image

FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "pdf": "PDF"}
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "pdf": "application/pdf"}


def image_bytes(kind: str, approx_bytes: int = 50_000, *, seed: int = 0) -> bytes:
    """A real `kind` file of roughly `approx_bytes` (noise, so it does not compress away)."""
    side = max(8, int((approx_bytes / 3) ** 0.5))
    rng = random.Random(seed)
    pixels = rng.randbytes(side * side * 3)
    image = Image.frombytes("RGB", (side, side), pixels)
    out = io.BytesIO()
    options = {"quality": 95} if kind in ("jpeg", "webp") else {}
    image.save(out, FORMATS[kind], **options)
    return out.getvalue()


def b64(data: bytes) -> str:
    """Standard padded base64 text."""
    return base64.b64encode(data).decode("ascii")


def data_url(data: bytes, mime: str) -> str:
    """A `data:<mime>;base64,` URL."""
    return f"data:{mime};base64,{b64(data)}"
