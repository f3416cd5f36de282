"""The manifest written into a record: exactly what was replaced and how to restore it.

It lives under the key `convex_offload` of a plain object inside the record (where, each record
kind says: a message's `content.metadata`, a thread's `metadata`, a workflow snapshot's top
level, ...), so the record stays valid Mastra content and Convex accepts its field names.

One builder writes it (`write_manifest`, always the current version) and one reader reads it
(`read_manifest`, dispatching on `v`): an unknown version is `UnsupportedManifestError`, a
manifest that does not parse is `ForbiddenReferenceError`, each naming the record. Version 1:

    {"v": 1, "created_metadata": false, "refs": [
      {"path": "/parts/1/data", "form": "base64" | "data_url" | "embedded",
       "header": "data:image/png;base64,",
       "span": [start, end] (embedded only: where the URL sits in the rewritten string),
       "bucket": "images", "key": "chat/t-<tenant>/<sha256>", "size": 123456, "sha256": "<hex>",
       "declared_type": "image/png", "sniffed_type": "image/png", "url": "<what replaced the payload>"}]}

Restoring puts `header + base64(bytes)` back at `path` (or at `span` inside the string) for each
ref whose place still holds its `url`, then removes the manifest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convex_offload.errors import ForbiddenReferenceError, UnsupportedManifestError

MANIFEST_KEY: Final = "convex_offload"
MANIFEST_VERSION: Final = 1
MAX_REFS: Final = 1000
"""No record holds more attachments than this (`max_payloads_per_record` is at most this, too)."""
Form = Literal["base64", "data_url", "embedded"]


class Ref(BaseModel):
    """One replaced payload: where it was, how it was written, and the object that holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    form: Form
    header: str = ""
    span: tuple[int, int] | None = None
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    declared_type: str | None = None
    sniffed_type: str
    url: str

    @property
    def ident(self) -> tuple[str, str]:
        """(bucket, key)"""
        return (self.bucket, self.key)


class Manifest(BaseModel):
    """All the refs of one record part, whatever version they were read from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    created_metadata: bool = False
    """The object holding the manifest was created to hold it (it goes away on restore)."""
    refs: tuple[Ref, ...] = ()


class _V1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1]
    created_metadata: bool = False
    refs: list[Ref]


Checked = tuple[Manifest, str | None]
"""A manifest read, and what is wrong with its places (None: nothing)."""


_V1_FIELDS: Final = frozenset({"v", "refs", "created_metadata"})


def _read_v1(raw: Mapping[str, Any]) -> Checked:
    # Listings read the same manifests again and again: each ref is validated once and then found
    # by its fields (pydantic validation of every ref on every read was a fifth of a cached listing).
    refs, created = raw.get("refs"), raw.get("created_metadata", False)
    if raw.keys() <= _V1_FIELDS and isinstance(refs, list) and isinstance(created, bool):
        try:
            return _cached_manifest(created, tuple(map(_frozen, refs)))
        except (TypeError, _NotFrozen):
            pass  # unhashable or odd fields: validate the slow way, for the error it names
    parsed = _V1.model_validate(raw)
    manifest = Manifest(created_metadata=parsed.created_metadata, refs=tuple(parsed.refs))
    return manifest, _place_problem(manifest)


class _NotFrozen(Exception):
    """A ref that is not a plain object of plain values."""


def _frozen(ref: Any) -> tuple[tuple[str, Any], ...]:
    """A ref's fields as a hashable key (in their stored order: another order only misses the cache)."""
    if type(ref) is not dict:
        raise _NotFrozen
    if "span" in ref:
        return tuple((k, tuple(v) if k == "span" and isinstance(v, list) else v) for k, v in ref.items())
    return tuple(ref.items())


@functools.lru_cache(maxsize=65_536)
def _cached_ref(items: tuple[tuple[str, Any], ...]) -> Ref:
    return Ref.model_validate(dict(items))


@functools.lru_cache(maxsize=16_384)
def _cached_manifest(created: bool, refs: tuple[tuple[tuple[str, Any], ...], ...]) -> Checked:
    manifest = Manifest(created_metadata=created, refs=tuple(_cached_ref(ref) for ref in refs))
    return manifest, _place_problem(manifest)


_READERS: Final[dict[int, Callable[[Mapping[str, Any]], Checked]]] = {1: _read_v1}


def write_manifest(manifest: Manifest) -> dict[str, Any]:
    """The manifest as stored, in the current version (absent `span`/types omitted, never null)."""
    return {
        "v": MANIFEST_VERSION,
        "created_metadata": manifest.created_metadata,
        "refs": [ref.model_dump(exclude_none=True) for ref in manifest.refs],
    }


def build_manifest(refs: Sequence[Ref], *, created_metadata: bool = False) -> dict[str, Any]:
    """The stored manifest of `refs` (each place once; a later ref for the same place wins)."""
    unique = list({(r.path, r.span): r for r in refs}.values())
    return write_manifest(Manifest(created_metadata=created_metadata, refs=tuple(unique)))


def read_manifest(holder: Any, *, record: str) -> Manifest | None:
    """The manifest inside `holder` (a plain object), None when there is none.

    `record` names the record in errors. Restoring from a damaged or forged manifest could put
    the wrong bytes in a message, so anything unreadable is refused.
    """
    if not isinstance(holder, dict):
        return None
    raw = holder.get(MANIFEST_KEY)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ForbiddenReferenceError(f"{record}: unreadable {MANIFEST_KEY} manifest (not an object)")
    version = raw.get("v")
    reader = _READERS.get(version) if isinstance(version, int) and not isinstance(version, bool) else None
    if reader is None:
        raise UnsupportedManifestError(
            f"{record}: {MANIFEST_KEY} manifest version {version!r} is not one this library reads "
            f"(it reads {sorted(_READERS)}): upgrade convex-offload",
            record=record,
            version=version,
        )
    refs = raw.get("refs")
    if isinstance(refs, list) and len(refs) > MAX_REFS:
        raise ForbiddenReferenceError(
            f"{record}: {MANIFEST_KEY} manifest lists {len(refs):,} refs, over the limit of {MAX_REFS:,}"
        )
    try:
        manifest, problem = reader(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ForbiddenReferenceError(
            f"{record}: unreadable {MANIFEST_KEY} manifest ({where}: {error['msg']})"
        ) from None
    if problem is not None:
        raise ForbiddenReferenceError(f"{record}: {problem}")
    return manifest


def _place_problem(manifest: Manifest) -> str | None:
    """Each place is replaced once: no ref listed twice, no two spans of one string overlapping."""
    spans: dict[str, list[tuple[int, int]]] = {}
    whole: set[str] = set()
    for ref in manifest.refs:
        if ref.span is None:
            if ref.path in whole or ref.path in spans:
                return f"ref {ref.path} is listed twice in the manifest"
            whole.add(ref.path)
            continue
        begin, end = ref.span
        if ref.path in whole or not 0 <= begin < end:
            return f"ref {ref.path} has a span that cannot be {ref.span}"
        for other_begin, other_end in spans.get(ref.path, []):
            if begin < other_end and other_begin < end:
                return f"refs {ref.path} overlap (listed twice?)"
        spans.setdefault(ref.path, []).append((begin, end))
    return None
