"""Finding base64 payloads in a JSON tree (Mastra message content, metadata, snapshots).

Where payloads hide (FACTS §5): file parts with raw base64 `data` or a data URL, AI SDK v5 `url`
data URLs, `experimental_attachments[].url`, image parts, tool results and provider metadata.
The rules, in order:

1. A string that is a whole `data:…;base64,…` URL is a payload, wherever it is.
2. A string in a field known to carry bytes (`data`, `image`, `base64`, `bytes` of an object that
   is a file/image/media part or names a MIME type) is raw base64, unless it is a URL
   (`https://…` and other schemes are user links: never fetched, never rewritten).
3. A data URL embedded in a longer string (Markdown, working memory) is a payload if it decodes.
4. Any other string of at least `bare_min_chars` that decodes strictly and sniffs as binary.

Strings shorter than the smallest payload worth looking at are skipped without a second look,
which keeps text-only content on a fast path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from convex_offload.errors import InvalidInputError, InvalidValueError
from convex_offload.offload.tree import Token, pointer

Form = Literal["base64", "data_url", "embedded"]

BYTES_FIELDS: Final = frozenset({"data", "image", "base64", "bytes", "b64_json"})
URL_FIELDS: Final = frozenset({"url", "uri", "href", "src", "image_url", "dataUrl", "data_url"})
"""Fields whose data URLs must decode: there a malformed payload is an error, not text."""
PART_TYPES: Final = frozenset({"file", "image", "media", "image_url", "input_image", "input_file", "audio"})
TYPE_FIELDS: Final = ("mimeType", "mediaType", "contentType", "mime_type", "media_type")
DATA_URL_HEADER: Final = re.compile(r"data:([^,;]*)((?:;[^,;]*)*);base64,", re.ASCII)
"""The header of a base64 data URL: its media type (group 1) and parameters (group 2)."""
_EMBEDDED = re.compile(r"data:[a-zA-Z0-9.+/-]*(?:;[a-zA-Z0-9.+=_-]*)*;base64,[A-Za-z0-9+/]+={0,2}", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_TEXT = "text with a lone surrogate (U+D800-U+DFFF), which UTF-8 cannot store"
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]{1,31}:")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One payload found in a tree.

    `path` leads from the root to the string `text`; `start`/`end` bound the base64 inside it;
    `header` is the exact data URL prefix (empty for raw base64); `span` bounds the whole data
    URL inside a longer string (embedded form only). `strict` marks payloads that must decode
    (a known bytes field or an explicit data URL): a malformed one is an error, not text.
    """

    path: tuple[Token, ...]
    text: str
    form: Form
    header: str
    start: int
    end: int
    declared_type: str | None
    filename: str | None
    strict: bool
    span: tuple[int, int] | None = None


def scan(
    root: Any,
    *,
    min_chars: int,
    bare_min_chars: int,
    max_depth: int = 64,
    skip: tuple[Token, ...] | None = None,
    where: str = "record",
) -> list[Candidate]:
    """Every payload candidate in `root`, in document order.

    `min_chars` is the shortest base64 text worth offloading: shorter strings are skipped except
    in known bytes fields and data URLs, which are always checked. `skip` is the path of a value
    not to look into (our own manifest). `where` names the record in errors: nesting deeper than
    `max_depth` is `InvalidInputError`, and text that UTF-8 cannot hold (a lone surrogate, which
    Convex would store as U+FFFD, so it would not read back) is `InvalidValueError`.
    """
    return list(_walk(root, min_chars, bare_min_chars, max_depth, skip, where))


def _walk(
    root: Any,
    min_chars: int,
    bare_min_chars: int,
    max_depth: int,
    skip: tuple[Token, ...] | None,
    where: str,
) -> Iterator[Candidate]:
    # Iterative, so hostile nesting meets a typed error rather than Python's recursion limit.
    stack: list[tuple[Any, tuple[Token, ...], dict[str, Any] | None, Token | None]] = [(root, (), None, None)]
    while stack:
        value, path, parent, key = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                raise InvalidValueError(f"{where} {pointer(path)}: {_SURROGATE_TEXT}")
            found = _classify(value, path, parent, key, min_chars, bare_min_chars)
            if found is not None:
                yield from found
        elif isinstance(value, dict):
            if len(path) >= max_depth:
                raise InvalidInputError(f"{where} {pointer(path)}: nested deeper than {max_depth} levels")
            for k in value:
                if isinstance(k, str) and not k.isascii() and _SURROGATE.search(k):
                    raise InvalidValueError(f"{where} {pointer((*path, k))}: field name: {_SURROGATE_TEXT}")
            stack.extend(
                (v, child, value, k) for k, v in reversed(value.items()) if (child := (*path, k)) != skip
            )
        elif isinstance(value, list):
            if len(path) >= max_depth:
                raise InvalidInputError(f"{where} {pointer(path)}: nested deeper than {max_depth} levels")
            stack.extend((v, (*path, i), None, i) for i, v in reversed(list(enumerate(value))))


def _classify(
    text: str,
    path: tuple[Token, ...],
    parent: dict[str, Any] | None,
    key: Token | None,
    min_chars: int,
    bare_min_chars: int,
) -> list[Candidate] | None:
    if text.startswith("data:"):
        header = DATA_URL_HEADER.match(text)
        if header is not None:
            return [
                Candidate(
                    path=path,
                    text=text,
                    form="data_url",
                    header=header.group(0),
                    start=header.end(),
                    end=len(text),
                    declared_type=header.group(1) or None,
                    filename=_filename(parent),
                    strict=isinstance(key, str) and (key in BYTES_FIELDS or key in URL_FIELDS),
                )
            ]
        return None
    if parent is not None and isinstance(key, str) and key in BYTES_FIELDS and _is_bytes_part(parent):
        if _URL_SCHEME.match(text):
            return None
        return [
            _raw_base64(path, text, declared=_declared_type(parent), filename=_filename(parent), strict=True)
        ]
    if len(text) < min_chars:
        return None
    if ";base64," in text:
        embedded = [
            Candidate(
                path=path,
                text=text,
                form="embedded",
                header=text[m.start() : text.index(",", m.start()) + 1],
                start=text.index(",", m.start()) + 1,
                end=m.end(),
                declared_type=DATA_URL_HEADER.match(text, m.start()).group(1) or None,  # type: ignore[union-attr]
                filename=None,
                strict=False,
                span=(m.start(), m.end()),
            )
            for m in _EMBEDDED.finditer(text)
            if m.end() - m.start() >= min_chars
        ]
        return embedded or None
    if len(text) >= bare_min_chars and _looks_like_base64(text):
        return [_raw_base64(path, text, declared=None, filename=None, strict=False)]
    return None


def _raw_base64(
    path: tuple[Token, ...], text: str, *, declared: str | None, filename: str | None, strict: bool
) -> Candidate:
    """A whole string of raw base64."""
    return Candidate(
        path=path,
        text=text,
        form="base64",
        header="",
        start=0,
        end=len(text),
        declared_type=declared,
        filename=filename,
        strict=strict,
    )


def _is_bytes_part(parent: dict[str, Any]) -> bool:
    kind = parent.get("type")
    return (isinstance(kind, str) and kind in PART_TYPES) or any(
        isinstance(parent.get(f), str) for f in TYPE_FIELDS
    )


def _declared_type(parent: dict[str, Any]) -> str | None:
    for field in TYPE_FIELDS:
        value = parent.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def _filename(parent: dict[str, Any] | None) -> str | None:
    if parent is None:
        return None
    for field in ("filename", "name", "fileName"):
        value = parent.get(field)
        if isinstance(value, str):
            return value
    return None


def _looks_like_base64(text: str) -> bool:
    """Cheap pre-check before a strict decode: length, and the alphabet at both ends."""
    if len(text) % 4:
        return False
    probe = text[:256] + text[-256:]
    return _BASE64_PROBE.fullmatch(probe) is not None


_BASE64_PROBE = re.compile(r"[A-Za-z0-9+/]*={0,2}[A-Za-z0-9+/]*={0,2}", re.ASCII)
