"""The files this package ships besides Python: the Convex functions folder and the local Convex server.

An installed wheel carries them as package data (`convex_offload/_data/convex/`,
`convex_offload/_data/localconvex/`); a source checkout (an editable install) has them at the
repository's top (`convex/`, `localconvex/`). Callers get real folders either way.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from convex_offload.errors import DevToolsError

_DATA = "_data"
_SKIPPED_PARTS = {"node_modules", "__pycache__"}
LOCALCONVEX_FILES = ("server.mjs", "lib", "package.json", "package-lock.json")
"""What of `localconvex/` is shipped: the server, its library, its manifest and lock file."""


def source_checkout() -> Path | None:
    """The repository's root when this package runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    markers = ("pyproject.toml", "convex/schema.ts", "localconvex/server.mjs")
    return root if all((root / marker).is_file() for marker in markers) else None


def _folder(name: str) -> Path:
    shipped = resources.files("convex_offload").joinpath(_DATA, name)
    if shipped.is_dir():
        if not isinstance(shipped, Path):  # a zipped install: not a layout this package is built as
            raise DevToolsError(f"convex_offload's {name}/ files are not on disk ({shipped})")
        return shipped
    checkout = source_checkout()
    if checkout is not None:
        return checkout / name
    raise DevToolsError(
        f"this installation of convex-offload has no {name}/ folder: reinstall it from a wheel or a checkout"
    )


def functions_dir() -> Path:
    """The Convex functions folder users deploy (schema, `mastra/storage.ts`, `offload/*`)."""
    return _folder("convex")


def localconvex_dir() -> Path:
    """The local Convex server's sources (`server.mjs`, `lib/`, `package.json`, `package-lock.json`)."""
    return _folder("localconvex")


def tree_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every file under `folder`, sorted; no node_modules, caches or dotfiles."""
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any(p in _SKIPPED_PARTS or p.startswith(".") for p in parts):
            found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def localconvex_files() -> list[str]:
    """Relative paths of the shipped local Convex server's files (under `localconvex_dir()`)."""
    folder = localconvex_dir()
    files = []
    for name in LOCALCONVEX_FILES:
        path = folder / name
        if path.is_dir():
            files += [f"{name}/{rel}" for rel in tree_files(path)]
        elif path.is_file():
            files.append(name)
    return files


def digest() -> str:
    """A sha256 over every shipped file's path and bytes: what a prepared runtime was built from."""
    hasher = hashlib.sha256()
    for label, folder, files in (
        ("convex", functions_dir(), tree_files(functions_dir())),
        ("localconvex", localconvex_dir(), localconvex_files()),
    ):
        for rel in files:
            data = (folder / rel).read_bytes()
            hasher.update(f"{label}/{rel}\0{len(data)}\0".encode())
            hasher.update(data)
    return hasher.hexdigest()
