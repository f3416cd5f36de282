"""The offloader's two caches, each bounded in bytes, least recently used out.

- `ValueCache`: restored field values (data URL or base64 text), so a listing read again and again
  restores without fetching.
- `DigestCache`: what a payload string was found to be (sha256, size, sniffed type), so re-saving
  the same message (Mastra re-saves history) decodes and hashes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from convex_offload.offload.payload import Prepared


class ValueCache:
    """Restored field values by (bucket, key, header), bounded in characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def __repr__(self) -> str:
        return f"ValueCache(items={len(self._items)}, used={self.used}, limit={self.limit})"

    def get(self, bucket: str, key: str, header: str) -> str | None:
        """The cached value, or None."""
        return self.find((bucket, key, header))

    def find(self, ident: tuple[str, str, str]) -> str | None:
        """The cached value of (bucket, key, header), or None."""
        item = self._items.get(ident)
        if item is not None:
            self._items.move_to_end(ident)
        return item

    def put(self, bucket: str, key: str, header: str, value: str) -> None:
        """Remember a value (values larger than the whole cache are not kept)."""
        if len(value) > self.limit:
            return
        ident = (bucket, key, header)
        if ident in self._items:
            return
        self._items[ident] = value
        self.used += len(value)
        while self.used > self.limit:
            _, evicted = self._items.popitem(last=False)
            self.used -= len(evicted)

    def drop(self, bucket: str, key: str) -> None:
        """Forget every value of one object (after deleting it)."""
        for ident in [i for i in self._items if i[0] == bucket and i[1] == key]:
            self.used -= len(self._items.pop(ident))


class DigestCache:
    """What a payload string was found to be, so re-saving the same message decodes nothing.

    Looked up by a fingerprint (length, bounds and three short samples of the text), then
    confirmed by comparing the whole text: hashing a fresh multi-megabyte string for a dict key
    would cost a pass over it on every first save (0.14 ms per MB), while a comparison runs only
    on a likely hit and is cheaper still. The bytes are not kept.
    """

    _SAMPLE: Final = 48

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[tuple[int, int, int, str], tuple[str, Prepared]] = OrderedDict()

    def __repr__(self) -> str:
        return f"DigestCache(items={len(self._items)}, used={self.used}, limit={self.limit})"

    def _fingerprint(self, text: str, start: int, end: int) -> tuple[int, int, int, str]:
        middle = (start + end) // 2
        n = self._SAMPLE
        return (
            len(text),
            start,
            end,
            text[start : start + n] + text[middle : middle + n] + text[end - n : end],
        )

    def get(self, text: str, start: int, end: int) -> Prepared | None:
        """What `text[start:end]` was found to be, or None."""
        fingerprint = self._fingerprint(text, start, end)
        item = self._items.get(fingerprint)
        if item is None or item[0] != text:
            return None
        self._items.move_to_end(fingerprint)
        return item[1]

    def put(self, text: str, start: int, end: int, prepared: Prepared) -> None:
        """Remember what `text[start:end]` is (without its bytes)."""
        if len(text) > self.limit:
            return
        fingerprint = self._fingerprint(text, start, end)
        replaced = self._items.pop(fingerprint, None)
        if replaced is not None:
            self.used -= len(replaced[0])
        self._items[fingerprint] = (
            text,
            Prepared(prepared.sha256, prepared.size, prepared.sniffed_type, None),
        )
        self.used += len(text)
        while self.used > self.limit:
            _, (evicted, _) = self._items.popitem(last=False)
            self.used -= len(evicted)
