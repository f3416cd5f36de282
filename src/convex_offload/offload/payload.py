"""Decoding a base64 payload strictly, hashing it, and sniffing what its bytes really are."""

from __future__ import annotations

import binascii
import hashlib
import threading
from dataclasses import dataclass
from typing import Final

import magic
import pybase64

from convex_offload.errors import MalformedAttachmentError

CHUNK_CHARS: Final = 4 << 20
"""Base64 decoded in slices of this many characters (a multiple of 4), hashed as it goes."""
SNIFF_BYTES: Final = 4096
"""libmagic recognises every type we route on from the first few KiB."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """What one payload is: its bytes' digest, size and sniffed type (and the bytes, until uploaded)."""

    sha256: str
    size: int
    sniffed_type: str
    data: bytes | bytearray | None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A payload's bytes with their sha256 (hex)."""

    data: bytes | bytearray
    sha256: str

    @property
    def size(self) -> int:
        """Decoded size in bytes."""
        return len(self.data)


def decode_base64(text: str, *, start: int = 0, end: int | None = None, where: str) -> Decoded:
    """Strictly decode `text[start:end]` as canonical, padded, standard base64 and hash it.

    Strict means what re-encoding gives back exactly: the standard alphabet, `=` padding only at
    the end, no whitespace, and zero bits in the unused tail. Anything else raises
    `MalformedAttachmentError`, so an offloaded payload always restores to the same text.
    """
    stop = len(text) if end is None else end
    length = stop - start
    if length % 4:
        raise MalformedAttachmentError(f"base64 of {length} characters is not a multiple of 4", path=where)
    if start == 0 and stop == len(text):
        # The whole string is the payload: one decode, no slice copied.
        try:
            whole: bytes = pybase64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedAttachmentError(
                "not valid base64 (characters outside base64)", path=where
            ) from None
        if length and not _tail_is_canonical(text, stop, whole):
            raise MalformedAttachmentError("base64 has non-zero padding bits (not canonical)", path=where)
        return Decoded(data=whole, sha256=hashlib.sha256(whole).hexdigest())
    out = bytearray(length // 4 * 3)
    digest = hashlib.sha256()
    written = 0
    position = start
    try:
        while position < stop:
            upto = min(position + CHUNK_CHARS, stop)
            chunk = text[position:upto]
            if upto < stop and chunk.endswith("="):
                raise binascii.Error("padding in the middle of the data")
            piece = pybase64.b64decode(chunk, validate=True)
            out[written : written + len(piece)] = piece
            digest.update(piece)
            written += len(piece)
            position = upto
    except (binascii.Error, ValueError) as exc:
        middle = "padding in the middle" in str(exc)
        reason = "padding in the middle" if middle else "characters outside base64"
        raise MalformedAttachmentError(f"not valid base64 ({reason})", path=where) from None
    del out[written:]
    if length and not _tail_is_canonical(text, stop, out):
        raise MalformedAttachmentError("base64 has non-zero padding bits (not canonical)", path=where)
    return Decoded(data=out, sha256=digest.hexdigest())


def _tail_is_canonical(text: str, stop: int, data: bytes | bytearray) -> bool:
    """True when the last quantum of `text` is what encoding `data` would write."""
    tail_bytes = len(data) % 3 or 3
    expected = binascii.b2a_base64(bytes(data[-tail_bytes:]), newline=False).decode("ascii")
    return text[stop - 4 : stop] == expected


class Sniffer:
    """python-magic behind a lock: libmagic handles are not safe to share between threads."""

    def __init__(self) -> None:
        self._magic = magic.Magic(mime=True)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Sniffer()"

    def mime_type(self, data: bytes | bytearray) -> str:
        """The MIME type libmagic finds in the first bytes of `data`."""
        head = bytes(data[:SNIFF_BYTES])
        with self._lock:
            found: str = self._magic.from_buffer(head)
        return found


_ALIASES: Final = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-icon": "image/vnd.microsoft.icon",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "application/x-pdf": "application/pdf",
    "video/x-m4v": "video/mp4",
    "text/xml": "application/xml",
}
_GENERIC: Final = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})
_TEXTUAL: Final = frozenset(
    {"application/json", "application/xml", "application/csv", "application/x-ndjson", "application/yaml"}
)
ACTIVE_CONTENT: Final = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/xml",
    }
)
"""Types a browser may run or render as a page: never served inline from our buckets."""


def normalize_type(mime: str | None) -> str:
    """Lower-case MIME type without parameters, with common aliases folded."""
    base = (mime or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def is_textual(mime: str) -> bool:
    """True for text/* and the structured-text application types."""
    return mime.startswith("text/") or mime in _TEXTUAL or mime.endswith(("+json", "+xml"))


def types_agree(declared: str | None, sniffed: str) -> bool:
    """Whether bytes sniffed as `sniffed` may honestly be labelled `declared`.

    A generic or absent label agrees with anything; libmagic cannot tell text formats apart,
    so any textual label agrees with text it sniffs as plain text; otherwise the types must match.
    """
    label = normalize_type(declared)
    found = normalize_type(sniffed)
    if label in _GENERIC or label == found:
        return True
    if found == "text/plain" and is_textual(label) and label not in ACTIVE_CONTENT:
        return True
    # libmagic reports some containers by their family only.
    return found == "application/octet-stream" and not label.startswith(("image/", "application/pdf"))
