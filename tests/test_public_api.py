"""What the package exports: every type a public method takes or returns, and only typed errors."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import pytest

import convex_offload
from convex_offload import ConvexClient, ConvexOffloadError, ConvexStore, InvalidInputError, OffloadingStore


def _classes_in(annotation: Any) -> set[type]:
    found: set[type] = set()
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type):
            found.add(item)
        stack.extend(typing.get_args(item))
        if isinstance(item, types.UnionType):
            stack.extend(item.__args__)
    return found


def _public_methods(cls: type) -> list[Any]:
    return [
        member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or inspect.iscoroutinefunction(member))
    ]


def test_every_type_in_a_public_signature_is_exported() -> None:
    exported = {getattr(convex_offload, name) for name in convex_offload.__all__}
    classes = [
        obj for obj in exported if isinstance(obj, type) and obj.__module__.startswith("convex_offload")
    ]
    missing: set[str] = set()
    for cls in classes:
        for method in _public_methods(cls):
            try:
                hints = typing.get_type_hints(method)
            except NameError:  # names only imported for type checking
                continue
            for annotation in hints.values():
                for used in _classes_in(annotation):
                    if used.__module__.startswith("convex_offload") and used not in exported:
                        missing.add(f"{cls.__name__}.{method.__name__}: {used.__module__}.{used.__name__}")
    assert not missing, sorted(missing)


def test_no_private_type_shows_in_a_public_signature() -> None:
    leaked = []
    for name in convex_offload.__all__:
        obj = getattr(convex_offload, name)
        if not isinstance(obj, type):
            continue
        for method in _public_methods(obj):
            try:
                hints = typing.get_type_hints(method)
            except NameError:
                continue
            for annotation in hints.values():
                leaked += [
                    f"{name}.{method.__name__}: {c.__name__}"
                    for c in _classes_in(annotation)
                    if c.__name__.startswith("_")
                ]
    assert not leaked


def test_internal_steps_are_not_methods_of_the_offloading_store() -> None:
    public = {name for name, _ in inspect.getmembers(OffloadingStore) if not name.startswith("_")}
    assert not public & {"batch", "upload", "abandon", "commit", "check_size", "object_refs", "restore_tree"}


@pytest.mark.parametrize(
    "call",
    [
        lambda: ConvexClient("ftp://example.com", "key"),
        lambda: ConvexClient("https://example.com", "  "),
        ConvexStore,
        lambda: ConvexStore("https://example.com"),
    ],
    ids=["bad-url", "empty-key", "nothing", "no-key"],
)
def test_bad_arguments_are_typed_errors(call: Any) -> None:
    with pytest.raises(InvalidInputError) as caught:
        call()
    assert isinstance(caught.value, ConvexOffloadError)
