"""Record kinds as data: what each stored table is, for offloading, restoring, gc, verify and migrate.

One description per table (`kinds.json`, package data), read here and sent with every scan,
reconciliation and guarded write to the Convex functions (`convex/offload/catalog.ts`), so Python
and Convex always read the same description. A kind says:

- `name`: how errors name its records (`message m1`); `table`: the Mastra table name requests use
  and owner ids carry (`<table>:<id>`); `storage`: the Convex table behind it and its layout
  (`typed`: the document is the record, found by its `by_record_id` index; `documents`: the
  `mastra_documents` fallback, `{table, primaryKey, record}`);
- `id` and `tenant`: the record's id field and the field whose value scopes object keys;
- `fields`: the fields that hold JSON worth scanning (`json`: a JSON string; `value`: the value
  itself). With one field the tree is that field's value, with several an object of them;
- `manifest`: where in the tree the manifest lives (its holder object); `null` when each scanned
  field is a part of its own (`parts` with `under: []`: a background task's args and result);
- `parts` (optional): objects under a path of the tree that carry manifests of their own and are
  owned separately (`<owner>/<name>/<key>`: a workflow run's step results);
- `merge`: how an update combines with the stored record (`shallow`: top-level keys replaced, the
  manifest's holder merged one level deeper; `replace`: the update is the whole tree);
- `guard`: the field (or fields) migrate compares before rewriting a record (compare-and-swap).

Offloading for a new table is one entry: `RecordKinds.default().with_kind(RecordKind(...))`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from convex_offload.convex.values import dumps
from convex_offload.errors import RecordKindError
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.scan import BYTES_FIELDS
from convex_offload.offload.tree import get_at

FieldEncoding = Literal["json", "value"]
_RESOURCE: Final = "kinds.json"


class Storage(BaseModel):
    """The Convex table behind a kind, and how a record sits in its documents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    layout: Literal["typed", "documents"] = "typed"


class Parts(BaseModel):
    """Objects under `under` (each key a part) carrying manifests of their own; with `under` empty
    the parts are the kind's fields themselves (each JSON field its own manifest and owner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    under: tuple[str, ...] = ()


class RecordKind(BaseModel):
    """One stored table's description (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1)
    table: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    storage: Storage
    id_field: Literal["id"] = Field("id", alias="id")
    tenant: str = Field(min_length=1)
    fields: dict[str, FieldEncoding] = Field(min_length=1)
    manifest: tuple[str, ...] | None = ()
    parts: Parts | None = None
    merge: Literal["shallow", "replace"] = "shallow"
    guard: str | tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.storage.layout == "documents" and self.storage.table != "mastra_documents":
            raise ValueError("the `documents` layout is the `mastra_documents` table")
        if self.manifest is None:
            if self.parts is None or self.parts.under:
                raise ValueError(
                    "`manifest: null` means each field is a part with its own manifest: it needs "
                    '`parts` with `"under": []`'
                )
            return self
        if len(self.fields) > 1 and (not self.manifest or self.manifest[0] not in self.fields):
            raise ValueError(
                "with several fields the tree is an object of them: `manifest` must start with one "
                f"of {sorted(self.fields)}"
            )
        if MANIFEST_KEY in self.manifest:
            raise ValueError(f"`manifest` cannot pass through the reserved key {MANIFEST_KEY!r}")
        return self

    @property
    def holder(self) -> tuple[str, ...]:
        """The path of the manifest's holder inside the tree (`()` for a kind of per-field parts)."""
        return self.manifest or ()

    @property
    def per_field(self) -> bool:
        """Whether each scanned field is a part of its own (no manifest for the whole record)."""
        return self.manifest is None

    @property
    def guards(self) -> tuple[str, ...]:
        """The fields migrate compares before rewriting a record."""
        return (self.guard,) if isinstance(self.guard, str) else self.guard

    @property
    def scanned_table(self) -> str:
        """How scans, reports and migrate's state name this kind's table: its Convex table, or
        for the `documents` layout (one Convex table for many kinds) its Mastra table."""
        return self.storage.table if self.storage.layout == "typed" else self.table

    def owner(self, record_id: str) -> str:
        """The owner id of a record's references: `<table>:<id>`."""
        return f"{self.table}:{record_id}"

    def part_owner(self, record_id: str, part: str) -> str:
        """The owner id of one part of a record: `<table>:<id>/<parts.name>/<part>`."""
        if self.parts is None:
            raise RecordKindError(f"record kind {self.name!r} has no parts")
        return f"{self.owner(record_id)}/{self.parts.name}/{part}"

    def label(self, record_id: str) -> str:
        """How errors name a record: `message m1`."""
        return f"{self.name} {record_id}"

    def tenant_of(self, row: Mapping[str, Any]) -> str | None:
        """The tenant of a stored row (scopes its object keys)."""
        value = row.get(self.tenant)
        return value if isinstance(value, str) else None

    def tree_of(self, row: Mapping[str, Any]) -> Any:
        """The JSON tree a row holds in its scanned fields (None when it holds none)."""
        if len(self.fields) == 1:
            [(field, encoding)] = self.fields.items()
            return _decode(row.get(field), encoding)
        tree = {}
        for field, encoding in self.fields.items():
            value = row.get(field)
            if value is not None:
                tree[field] = _decode(value, encoding)
        return tree

    def with_tree(self, row: Mapping[str, Any], tree: Any) -> dict[str, Any]:
        """A copy of `row` holding `tree` in its scanned fields (encoded as stored)."""
        out = dict(row)
        if len(self.fields) == 1:
            [(field, encoding)] = self.fields.items()
            out[field] = _encode(tree, encoding)
            return out
        for field, encoding in self.fields.items():
            if isinstance(tree, dict) and field in tree:
                out[field] = _encode(tree[field], encoding)
        return out

    def field_tree(self, row: Mapping[str, Any], field: str) -> Any:
        """The JSON tree one scanned field of a row holds (a part, for a per-field kind)."""
        return _decode(row.get(field), self.fields[field])

    def with_fields(self, row: Mapping[str, Any], trees: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `row` with these scanned fields set from their trees (encoded as stored)."""
        out = dict(row)
        for field, tree in trees.items():
            out[field] = None if tree is None else _encode(tree, self.fields[field])
        return out

    def part_trees(self, tree: Any) -> dict[str, Any]:
        """The parts of a tree that carry manifests of their own, by part key."""
        if self.parts is None:
            return {}
        node = get_at(tree, self.parts.under)
        if not isinstance(node, dict):
            return {}
        return {key: part for key, part in node.items() if isinstance(part, dict) and MANIFEST_KEY in part}

    def wire(self) -> dict[str, Any]:
        """The description as the Convex functions take it."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RecordKinds:
    """The record kinds one store offloads, by name and by table."""

    def __init__(self, kinds: Sequence[RecordKind]) -> None:
        self._by_name: dict[str, RecordKind] = {}
        self._by_table: dict[str, RecordKind] = {}
        for kind in kinds:
            if kind.name in self._by_name:
                raise RecordKindError(f"two record kinds are named {kind.name!r}")
            if kind.table in self._by_table:
                raise RecordKindError(f"two record kinds describe table {kind.table!r}")
            self._by_name[kind.name] = kind
            self._by_table[kind.table] = kind

    @classmethod
    def default(cls) -> RecordKinds:
        """The kinds of @mastra/convex's tables this library offloads (`kinds.json`)."""
        return _default_kinds()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordKinds:
        """Kinds from a description like `kinds.json`; `RecordKindError` names what is wrong."""
        entries = data.get("kinds")
        if not isinstance(entries, list):
            raise RecordKindError("a record kinds description needs a `kinds` list")
        return cls([parse_kind(entry) for entry in entries])

    def with_kind(self, kind: RecordKind | Mapping[str, Any]) -> RecordKinds:
        """These kinds plus one more (a new table: one entry)."""
        added = kind if isinstance(kind, RecordKind) else parse_kind(kind)
        return RecordKinds([*self, added])

    def __iter__(self) -> Iterator[RecordKind]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"RecordKinds({sorted(self._by_name)})"

    def named(self, name: str) -> RecordKind:
        """The kind called `name`; `RecordKindError` when there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise RecordKindError(f"no record kind named {name!r} (known: {sorted(self._by_name)})") from None

    def for_table(self, table: str) -> RecordKind:
        """The kind of a Mastra table name or of its Convex table; `RecordKindError` when none."""
        kind = self._by_table.get(table) or next((k for k in self if k.storage.table == table), None)
        if kind is None:
            raise RecordKindError(
                f"no record kind describes table {table!r} (known: {sorted(self._by_table)})"
            )
        return kind

    def wire(self) -> dict[str, Any]:
        """What the Convex functions are sent: the kinds, the bytes fields, the manifest key."""
        return {
            "kinds": [kind.wire() for kind in self],
            "bytesFields": sorted(BYTES_FIELDS),
            "manifestKey": MANIFEST_KEY,
        }


def parse_kind(entry: Any) -> RecordKind:
    """One kind from its JSON description; `RecordKindError` naming the kind and the field."""
    name = entry.get("name") if isinstance(entry, dict) else None
    try:
        return RecordKind.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'kind'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise RecordKindError(f"record kind {name!r}: {problems}") from None


@functools.cache
def _default_kinds() -> RecordKinds:
    text = resources.files("convex_offload.offload").joinpath(_RESOURCE).read_text(encoding="utf-8")
    return RecordKinds.from_json(json.loads(text))


def _decode(value: Any, encoding: FieldEncoding) -> Any:
    if encoding == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _encode(value: Any, encoding: FieldEncoding) -> Any:
    return dumps(value) if encoding == "json" else value
