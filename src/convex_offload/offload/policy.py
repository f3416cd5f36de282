"""Policy: which payloads of a tree are attachments, whether they may be stored, and where.

For each candidate the scanner found: decode strictly, hash and sniff it (or recall that from the
digest cache), refuse what policy forbids (zero bytes, a declared type the bytes contradict,
unsafe filenames), decide what stays inline (below `inline_threshold`, unless the record's inline
payloads exceed `record_inline_budget`), then route each attachment to a bucket and check that
bucket's limits (size, types, active content). No I/O happens here.
"""

from __future__ import annotations

import asyncio
import io
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import imagesize

from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.errors import AttachmentPolicyError, MalformedAttachmentError
from convex_offload.offload.caches import DigestCache
from convex_offload.offload.keys import KeyScheme
from convex_offload.offload.manifest import MANIFEST_KEY, Ref
from convex_offload.offload.payload import (
    ACTIVE_CONTENT,
    Decoded,
    Prepared,
    Sniffer,
    decode_base64,
    is_textual,
    normalize_type,
    types_agree,
)
from convex_offload.offload.registry import ObjectRef
from convex_offload.offload.scan import Candidate, scan
from convex_offload.offload.stats import OffloadStats
from convex_offload.offload.tree import Token, pointer

_FILENAME_FORBIDDEN: Final = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_FILENAME_BYTES: Final = 255
THREADED_CHARS: Final = 1 << 20
"""Payloads of this many base64 characters and more are decoded and hashed in a thread."""
POLYGLOT_HEAD: Final = 64 << 10
POLYGLOT_TAIL: Final = 8 << 10
DIMENSIONS_HEAD: Final = 1 << 20
"""Image headers (a JPEG's frame header may follow large EXIF/ICC segments) are in the first MiB."""
MARKUP: Final = (
    b"<script",
    b"<html",
    b"<iframe",
    b"<object",
    b"<embed",
    b"<svg",
    b"<!doctype html",
    b"javascript:",
)
"""What marks bytes as HTML or script, looked for (lower-cased) at both ends of a binary payload."""


@dataclass(slots=True)
class PlannedObject:
    """One payload of a tree: what it is, and (when `offload`) the object it becomes."""

    candidate: Candidate
    prepared: Prepared
    offload: bool = False
    bucket: str = ""
    key: str = ""
    disposition: str | None = None
    place: str = ""
    """The record and JSON path, for errors (`message m1 /parts/0/data`)."""
    tenant_scope: str = ""

    @property
    def ident(self) -> tuple[str, str]:
        """(bucket, key)"""
        return (self.bucket, self.key)

    def object_ref(self) -> ObjectRef:
        """The object as the reference registry records it."""
        return ObjectRef(self.bucket, self.key, self.tenant_scope, self.prepared.size, self.prepared.sha256)


@dataclass(slots=True)
class PlannedTree:
    """One tree's payloads, decoded, checked and routed, waiting for their uploads."""

    root: Any
    holder: tuple[Token, ...]
    tenant: str | None
    where: str
    items: list[PlannedObject]
    kept: list[Ref]
    """Refs of a manifest already in the input whose places still hold their URLs."""

    def offloaded(self) -> list[PlannedObject]:
        """The payloads of this tree that go to a bucket."""
        return [p for p in self.items if p.offload]


class Policy:
    """Plans trees under one configuration (see the module docstring)."""

    def __init__(
        self,
        config: OffloadConfig,
        buckets: Mapping[str, BucketConfig],
        keys: KeyScheme,
        *,
        sniffer: Sniffer,
        stats: OffloadStats,
    ) -> None:
        self.config = config
        self.buckets = dict(buckets)
        self.keys = keys
        self.sniffer = sniffer
        self.stats = stats
        self.digests = DigestCache(config.cache_bytes // 2)

    def __repr__(self) -> str:
        return f"Policy(buckets={sorted(self.buckets)})"

    def plan(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str, kept: Sequence[Ref]
    ) -> PlannedTree:
        """Find, decode, check and route the payloads of one tree (no I/O)."""
        candidates = self._candidates(root, holder, where)
        return self._planned(root, candidates, {}, holder=holder, tenant=tenant, where=where, kept=kept)

    async def plan_async(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str, kept: Sequence[Ref]
    ) -> PlannedTree:
        """`plan`, with the large payloads decoded and hashed in threads, all at once (pybase64 and
        hashlib let go of the GIL, so two cores decode two payloads)."""
        candidates = self._candidates(root, holder, where)
        big = [
            i
            for i, c in enumerate(candidates)
            if c.end - c.start >= THREADED_CHARS and self.digests.get(c.text, c.start, c.end) is None
        ]
        results = await asyncio.gather(*(asyncio.to_thread(_decode, candidates[i], where) for i in big))
        decoded = dict(zip(big, results, strict=True))
        return self._planned(root, candidates, decoded, holder=holder, tenant=tenant, where=where, kept=kept)

    def _candidates(self, root: Any, holder: tuple[Token, ...], where: str) -> list[Candidate]:
        candidates = scan(
            root,
            min_chars=_base64_chars(max(1, self.config.inline_threshold)),
            bare_min_chars=_base64_chars(self.config.bare_base64_min_bytes),
            max_depth=self.config.max_depth,
            skip=(*holder, MANIFEST_KEY),
            where=where,
        )
        self.stats.payloads_found += len(candidates)
        return candidates

    def _planned(
        self,
        root: Any,
        candidates: Sequence[Candidate],
        decoded: Mapping[int, Decoded | MalformedAttachmentError],
        *,
        holder: tuple[Token, ...],
        tenant: str | None,
        where: str,
        kept: Sequence[Ref],
    ) -> PlannedTree:
        items = self._choose(candidates, where, decoded) if candidates else []
        limit = self.config.max_payloads_per_record
        if len(items) + len(kept) > limit:
            raise AttachmentPolicyError(
                f"{len(items) + len(kept)} attachments in one record is over the limit of {limit}", path=where
            )
        for p in items:
            if p.offload:
                p.place = f"{where} {pointer(p.candidate.path)}"
                p.bucket = self.config.route(p.prepared.sniffed_type, p.prepared.size, tenant or "")
                self._check_bucket(p)
                p.key = self.keys.key_for(p.bucket, tenant, p.prepared.sha256)
                p.tenant_scope = self.keys.tenant_scope(tenant)
        return PlannedTree(root=root, holder=holder, tenant=tenant, where=where, items=items, kept=list(kept))

    def _choose(
        self,
        candidates: Sequence[Candidate],
        where: str,
        decoded: Mapping[int, Decoded | MalformedAttachmentError],
    ) -> list[PlannedObject]:
        planned: list[PlannedObject] = []
        for index, candidate in enumerate(candidates):
            prepared = self._prepare(candidate, where, decoded.get(index))
            if prepared is not None:
                planned.append(
                    PlannedObject(candidate, prepared, offload=prepared.size >= self.config.inline_threshold)
                )
        inline = sorted((p for p in planned if not p.offload), key=lambda p: p.prepared.size, reverse=True)
        budget = sum(p.prepared.size for p in inline)
        for p in inline:
            if budget <= self.config.record_inline_budget:
                break
            p.offload = True
            budget -= p.prepared.size
        return planned

    def _prepare(
        self, candidate: Candidate, where: str, done: Decoded | MalformedAttachmentError | None = None
    ) -> Prepared | None:
        """Decode, hash and sniff one candidate (or take what a thread decoded); None for lenient
        candidates that are not payloads."""
        place = f"{where} {pointer(candidate.path)}"
        text = candidate.text
        cached = self.digests.get(text, candidate.start, candidate.end) if done is None else None
        if cached is not None:
            self._check_payload(candidate, cached, place)
            return cached
        decoded = done if done is not None else _decode(candidate, where)
        if isinstance(decoded, MalformedAttachmentError):
            if candidate.strict:
                raise decoded
            return None
        sniffed = normalize_type(self.sniffer.mime_type(decoded.data)) if decoded.size else ""
        if candidate.form == "base64" and not candidate.strict and not _recognised_binary(sniffed):
            return None
        prepared = Prepared(sha256=decoded.sha256, size=decoded.size, sniffed_type=sniffed, data=decoded.data)
        self._check_payload(candidate, prepared, place)
        self._check_bytes(prepared, place)
        self.digests.put(text, candidate.start, candidate.end, prepared)
        return prepared

    def _check_bytes(self, prepared: Prepared, place: str) -> None:
        """What only the bytes can tell: a decompression bomb, a polyglot (checked once per payload)."""
        data, mime = prepared.data, prepared.sniffed_type
        if data is None or not mime:
            return
        if mime.startswith("image/") and mime not in ACTIVE_CONTENT:
            width, height = _dimensions(data)
            if width > 0 and height > 0 and width * height > self.config.max_image_pixels:
                raise AttachmentPolicyError(
                    f"a {width}x{height} {mime} ({width * height:,} pixels) is over the limit of "
                    f"{self.config.max_image_pixels:,} pixels (a decompression bomb?)",
                    path=place,
                )
        if not is_textual(mime) and mime not in ACTIVE_CONTENT:
            ends = bytes(data[:POLYGLOT_HEAD]).lower() + b"\n" + bytes(data[-POLYGLOT_TAIL:]).lower()
            if any(mark in ends for mark in MARKUP):
                raise AttachmentPolicyError(
                    f"the bytes of this {mime} also read as HTML or script (a polyglot file)", path=place
                )

    def _check_payload(self, candidate: Candidate, prepared: Prepared, place: str) -> None:
        if prepared.size == 0:
            raise AttachmentPolicyError("zero-byte attachment", path=place)
        if self.config.type_mismatch == "error" and not types_agree(
            candidate.declared_type, prepared.sniffed_type
        ):
            raise AttachmentPolicyError(
                f"declared type {candidate.declared_type!r} but the bytes are {prepared.sniffed_type!r}",
                path=place,
            )
        if candidate.filename is not None:
            check_filename(candidate.filename, place)

    def _check_bucket(self, p: PlannedObject) -> None:
        config = self.buckets[p.bucket]
        mime = p.prepared.sniffed_type
        if p.prepared.size > config.max_object_bytes:
            raise AttachmentPolicyError(
                f"{p.prepared.size} bytes is over bucket {p.bucket!r}'s limit of {config.max_object_bytes}",
                path=p.place,
            )
        if not config.accepts_type(mime):
            raise AttachmentPolicyError(f"type {mime!r} is not allowed in bucket {p.bucket!r}", path=p.place)
        if mime in ACTIVE_CONTENT:
            if config.active_content == "refuse":
                raise AttachmentPolicyError(
                    f"active content ({mime}) is refused by bucket {p.bucket!r}", path=p.place
                )
            p.disposition = "attachment"


def check_filename(name: str, place: str) -> None:
    """Refuse attachment names with path separators, `..`, control characters or over 255 bytes."""
    if _FILENAME_FORBIDDEN.search(name):
        raise AttachmentPolicyError(
            f"filename {name[:64]!r} has a path separator or control character", path=place
        )
    if name in (".", "..") or name.startswith(".."):
        raise AttachmentPolicyError(f"filename {name[:64]!r} is a relative path", path=place)
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise AttachmentPolicyError(f"filename is over {MAX_FILENAME_BYTES} bytes", path=place)


def _decode(candidate: Candidate, where: str) -> Decoded | MalformedAttachmentError:
    """The candidate's bytes and digest, or the error that says why it does not decode."""
    try:
        return decode_base64(
            candidate.text,
            start=candidate.start,
            end=candidate.end,
            where=f"{where} {pointer(candidate.path)}",
        )
    except MalformedAttachmentError as exc:
        return exc


def _dimensions(data: bytes | bytearray) -> tuple[int, int]:
    """Width and height an image's header declares ((-1, -1) when it cannot be read)."""
    try:
        width, height = imagesize.get(io.BytesIO(bytes(data[:DIMENSIONS_HEAD])))
    except (ValueError, OSError, struct.error):
        return (-1, -1)
    return (int(width), int(height))


def _recognised_binary(mime: str) -> bool:
    """Bytes libmagic recognised as a binary format (not text, not unknown octets): only such a
    bare base64 string outside a known byte field counts as an attachment."""
    return bool(mime) and not is_textual(mime) and mime != "application/octet-stream"


def _base64_chars(size: int) -> int:
    """Length of the base64 text of `size` bytes."""
    return (size + 2) // 3 * 4
