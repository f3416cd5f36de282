"""What a record holds after a write, and its manifest: for whole records and for updates.

A whole record (or part) written: the rewritten tree, its refs those the rewriter recorded.

An update merged into a stored record (a kind whose `merge` is `shallow`): top-level keys of the
update replace the stored ones and the manifest's holder is merged one level deeper, as
@mastra/convex merges message content and as the server merges thread metadata, resource metadata
and workflow state. The stored refs whose places still hold their URLs after the merge survive;
the update's new refs join them in one manifest. `Outcome.tree` is the whole merged tree (for a
merge done here), `Outcome.update` what to send for a merge the server does (its holder carrying
the whole manifest, so the server's shallow merge replaces the stored one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from convex_offload.offload.manifest import MANIFEST_KEY, Manifest, Ref, build_manifest, read_manifest
from convex_offload.offload.restorer import place_holding
from convex_offload.offload.rewriter import Rewritten
from convex_offload.offload.tree import get_at, without_key

CheckRef = Callable[[Ref], None]
"""Refuses a ref this record may not keep (`ForbiddenReferenceError`)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one record (or part) stores after a write."""

    tree: Any
    """The tree the record holds afterwards."""
    update: Any
    """For a merge the server does: what to send (None: nothing changes there)."""
    refs: list[Ref] = field(default_factory=list)
    """Every ref the stored tree's manifest holds."""


def whole(rewritten: Rewritten) -> Outcome:
    """The outcome of writing a whole tree."""
    return Outcome(tree=rewritten.root, update=rewritten.root, refs=list(rewritten.refs))


def unchanged(stored: Any, holder: Sequence[str], *, record: str) -> Outcome:
    """The outcome of an update that leaves the tree alone (its refs stay as stored)."""
    old = read_manifest(get_at(stored, holder), record=record)
    return Outcome(tree=stored, update=None, refs=list(old.refs) if old else [])


def merged(
    stored: Any,
    update: Any,
    rewritten: Rewritten,
    holder: tuple[str, ...],
    *,
    record: str,
    check: CheckRef,
) -> Outcome:
    """The outcome of merging `update` (rewritten as `rewritten`) into the stored tree."""
    base = stored if isinstance(stored, dict) else {}
    old = read_manifest(get_at(base, holder), record=record)
    new = read_manifest(get_at(rewritten.root, holder), record=record)
    clean = _strip(rewritten.root, holder, drop_if_empty=bool(new and new.created_metadata))
    tree = _merge_along(base, clean, holder)
    user_holder = _has(base, holder) and not (old and old.created_metadata)
    created = bool(holder) and not (_has(update, holder) or user_holder)
    surviving = [ref for ref in (old.refs if old else ()) if place_holding(tree, ref) is not None]
    for ref in surviving:
        check(ref)
    refs = list({(r.path, r.span): r for r in [*surviving, *rewritten.refs]}.values())
    if refs:
        tree = _with_manifest(tree, holder, build_manifest(refs, created_metadata=created))
    else:
        tree = _strip(tree, holder, drop_if_empty=created)
    sent = clean
    if refs or old is not None:
        sent = _with_manifest(clean, holder, build_manifest(refs, created_metadata=created))
    return Outcome(tree=tree, update=sent, refs=refs)


def _merge_along(base: dict[str, Any], update: Any, holder: tuple[str, ...]) -> Any:
    """`{...base, ...update}`, the objects on the holder's path merged the same way, one level deeper each."""
    if not isinstance(update, dict):
        return update
    out = {**base, **update}
    if holder:
        head = holder[0]
        inner_base, inner_update = base.get(head), update.get(head)
        if isinstance(inner_base, dict) and isinstance(inner_update, dict):
            out[head] = _merge_along(inner_base, inner_update, holder[1:])
    return out


def _with_manifest(tree: Any, holder: tuple[str, ...], manifest: dict[str, Any]) -> Any:
    """A copy of `tree` whose holder (created if absent) carries `manifest`."""
    if not holder:
        base = tree if isinstance(tree, dict) else {}
        return {**base, MANIFEST_KEY: manifest}
    base = dict(tree) if isinstance(tree, dict) else {}
    head = holder[0]
    base[head] = _with_manifest(base.get(head), holder[1:], manifest)
    return base


def _strip(tree: Any, holder: tuple[str, ...], *, drop_if_empty: bool) -> Any:
    """A copy of `tree` without the manifest at its holder; the holder goes too if it is left empty
    and `drop_if_empty` (it was created to hold the manifest)."""
    if not holder:
        return without_key(tree, MANIFEST_KEY)
    if not isinstance(tree, dict):
        return tree
    head = holder[0]
    inner = tree.get(head)
    if not isinstance(inner, dict):
        return tree
    stripped = _strip(inner, holder[1:], drop_if_empty=drop_if_empty)
    if stripped is inner:
        return tree
    out = dict(tree)
    if drop_if_empty and len(holder) == 1 and not stripped:
        del out[head]
    else:
        out[head] = stripped
    return out


def _has(tree: Any, path: Sequence[str]) -> bool:
    """Whether `path` leads to a key present in `tree` (its value may be null)."""
    if not path:
        return False
    node = tree
    for token in path[:-1]:
        node = node.get(token) if isinstance(node, dict) else None
    return isinstance(node, dict) and path[-1] in node


def refs_of(tree: Any, holder: Sequence[str], *, record: str) -> list[Ref]:
    """The refs of the manifest at `holder` in a stored tree."""
    manifest: Manifest | None = read_manifest(get_at(tree, holder), record=record)
    return list(manifest.refs) if manifest else []
