"""Rewriting: a copy of a planned tree with each attachment replaced by its URL, and its manifest.

Pure and synchronous: the URLs are resolved before (every upload they name has succeeded), and the
caller's tree is never modified (copy-on-write: only the containers on edited paths are copied).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convex_offload.offload.manifest import MANIFEST_KEY, Ref, build_manifest, read_manifest
from convex_offload.offload.policy import PlannedObject, PlannedTree
from convex_offload.offload.tree import CopyOnWrite, Token, get_at, pointer


@dataclass(slots=True)
class Rewritten:
    """The result of offloading a tree: the rewritten copy and its refs (kept ones included)."""

    root: Any
    refs: list[Ref] = field(default_factory=list)
    new_refs: list[Ref] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was replaced in this call."""
        return bool(self.new_refs)


def rewrite(plan: PlannedTree, urls: Mapping[tuple[str, str], str]) -> Rewritten:
    """The rewritten copy of a planned tree; `urls` holds each offloaded object's reference URL."""
    root, holder, kept = plan.root, plan.holder, plan.kept
    offloaded = plan.offloaded()
    if not offloaded:
        return Rewritten(root=root, refs=list(kept))
    tree = CopyOnWrite(root)
    new_refs: list[Ref] = []
    by_path: dict[tuple[Token, ...], list[PlannedObject]] = {}
    for p in offloaded:
        by_path.setdefault(p.candidate.path, []).append(p)
    for path, items in by_path.items():
        if items[0].candidate.form != "embedded":
            p = items[0]
            url = urls[p.ident]
            tree.set(path, url)
            new_refs.append(_ref(p, url, span=None))
            continue
        original: str = tree.get(path)
        pieces: list[str] = []
        cursor = 0
        for p in sorted(items, key=lambda item: item.candidate.start):
            assert p.candidate.span is not None
            begin, end = p.candidate.span
            url = urls[p.ident]
            pieces.append(original[cursor:begin])
            offset = sum(len(piece) for piece in pieces)
            pieces.append(url)
            new_refs.append(_ref(p, url, span=(offset, offset + len(url))))
            cursor = end
        pieces.append(original[cursor:])
        tree.set(path, "".join(pieces))
    created = tree.ensure_dict(holder)
    previous = read_manifest(get_at(root, holder), record=plan.where)
    refs = [*kept, *new_refs]
    manifest = build_manifest(refs, created_metadata=created or bool(previous and previous.created_metadata))
    tree.set((*holder, MANIFEST_KEY), manifest)
    return Rewritten(root=tree.root, refs=refs, new_refs=new_refs)


def _ref(p: PlannedObject, url: str, *, span: tuple[int, int] | None) -> Ref:
    c = p.candidate
    return Ref(
        path=pointer(c.path),
        form=c.form,
        header=c.header,
        span=span,
        bucket=p.bucket,
        key=p.key,
        size=p.prepared.size,
        sha256=p.prepared.sha256,
        declared_type=c.declared_type,
        sniffed_type=p.prepared.sniffed_type,
        url=url,
    )
