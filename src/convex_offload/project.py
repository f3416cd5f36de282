"""`convex-offload init`: put this package's Convex functions into a user's Convex project.

A project without a functions folder gets the whole folder (schema, `mastra/storage.ts`,
`offload/*`, `_generated/`, `tsconfig.json`), plus a `package.json` and `package-lock.json` with
the npm versions this release is tested with when it has no `package.json`. A project with a
functions folder gets `offload/` and `mastra/*.ts`; its own `schema.ts` is never rewritten:
`plan_init` lists the tables it lacks and the lines that add them. A file that exists with other
contents is a conflict: nothing is written unless `force` is set. The functions folder is
`convex/`, or what `convex.json`'s `functions` names.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nodesemver

from convex_offload import bundled
from convex_offload.errors import ProjectSetupError

Action = Literal["create", "overwrite", "unchanged", "conflict"]

SUPPORTED_RANGES = {
    "@mastra/convex": ">=1.5.2 <1.6.0",
    "@mastra/core": ">=1.53.0 <2.0.0",
    "convex": ">=1.48.0 <2.0.0",
}
"""The npm versions this release works with (@mastra/convex's wire protocol and schema, its peer
@mastra/core, Convex's server API). The shipped `package.json` pins the ones it is tested with."""

_PACKAGE_FILES = ("package.json", "package-lock.json")
_EXISTING_FOLDER_PARTS = ("offload/", "mastra/")
_SCHEMA = "schema.ts"


@dataclass(frozen=True)
class FileStep:
    """One file `init` writes (or would): where, from which shipped file, and what happens."""

    path: str
    """Relative to the project folder, POSIX style."""
    action: Action
    source: Path = field(repr=False)
    rewrite: dict[str, Any] | None = field(default=None, repr=False)
    """For a generated package.json/lock: top-level fields to set."""


@dataclass(frozen=True)
class VersionCheck:
    """One npm package of the project against the versions this release supports."""

    package: str
    supported: str
    tested: str
    declared: str | None
    """What the project's package.json asks for, if anything."""
    resolved: str | None
    """What is installed (node_modules) or locked (package-lock.json), if known."""
    status: Literal["ok", "wider", "unsupported", "missing"]
    advice: str

    def to_json(self) -> dict[str, Any]:
        """The check as plain data."""
        return self.__dict__.copy()


@dataclass(frozen=True)
class SchemaAdvice:
    """What an existing schema.ts lacks: its tables, and the exact lines that add them."""

    path: str
    missing_tables: list[str]
    imports: list[str]
    entries: list[str]

    @property
    def text(self) -> str:
        """Instructions to paste: the import lines, then the entries for defineSchema({...})."""
        if not self.missing_tables:
            return ""
        return (
            f"{self.path} lacks {len(self.missing_tables)} table(s) convex-offload needs. "
            "Add these imports at its top:\n\n"
            + "\n".join(self.imports)
            + "\n\nand these entries inside its defineSchema({ ... }):\n\n"
            + "\n".join(f"  {entry}" for entry in self.entries)
            + "\n"
        )


@dataclass(frozen=True)
class InitPlan:
    """Everything `init` will do in a project; `apply_init` carries it out."""

    project: Path
    functions_dir: str
    """The functions folder, relative to the project (`convex` unless convex.json says otherwise)."""
    new_folder: bool
    steps: list[FileStep]
    schema: SchemaAdvice | None
    versions: list[VersionCheck]
    force: bool

    @property
    def conflicts(self) -> list[FileStep]:
        """Files that exist with other contents and would not be overwritten."""
        return [s for s in self.steps if s.action == "conflict"]

    def refuse_conflicts(self) -> None:
        """`ProjectSetupError` naming the files that exist with other contents, if there are any."""
        conflicts = self.conflicts
        if not conflicts:
            return
        listed = ", ".join(s.path for s in conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise ProjectSetupError(
            f"{len(conflicts)} file(s) already exist with other contents in {self.project}: {listed} "
            "(nothing was written; --force overwrites them)"
        )

    @property
    def version_problems(self) -> list[VersionCheck]:
        """Packages missing from package.json or outside the supported versions."""
        return [v for v in self.versions if v.status in ("unsupported", "missing")]

    def to_json(self) -> dict[str, Any]:
        """The plan as plain data."""
        return {
            "project": str(self.project),
            "functions_dir": self.functions_dir,
            "new_folder": self.new_folder,
            "files": [{"path": s.path, "action": s.action} for s in self.steps],
            "schema": None
            if self.schema is None
            else {
                "path": self.schema.path,
                "missing_tables": self.schema.missing_tables,
                "imports": self.schema.imports,
                "entries": self.schema.entries,
            },
            "versions": [v.to_json() for v in self.versions],
        }


def plan_init(project: Path, *, force: bool = False) -> InitPlan:
    """What `init` would do in `project` (a folder, created if missing); writes nothing.

    Raises `ProjectSetupError` if `project` is not a folder or its package.json/convex.json
    cannot be read.
    """
    project = project.expanduser().resolve()
    if project.exists() and not project.is_dir():
        raise ProjectSetupError(f"{project} is not a folder")
    functions_rel = _functions_folder(project)
    target = project / functions_rel
    if target.exists() and not target.is_dir():
        raise ProjectSetupError(f"{target} is not a folder")
    new_folder = not target.is_dir() or not any(target.iterdir())
    shipped = bundled.functions_dir()
    names = bundled.tree_files(shipped)
    steps: list[FileStep] = []
    for rel in names:
        if rel in _PACKAGE_FILES:
            continue
        if not new_folder and not rel.startswith(_EXISTING_FOLDER_PARTS):
            continue
        steps.append(_step(project, f"{functions_rel}/{rel}", shipped / rel, force))
    package_json = project / "package.json"
    has_package = package_json.is_file()
    if not has_package:
        name = _package_name(project)
        manifest = {
            "name": name,
            "description": "A Convex project with convex-offload's functions.",
            "scripts": {"typecheck": f"tsc --noEmit -p {functions_rel}"},
        }
        steps.append(_step(project, "package.json", shipped / "package.json", force, rewrite=manifest))
        lock = shipped / "package-lock.json"
        steps.append(_step(project, "package-lock.json", lock, force, rewrite={"name": name}))
    schema = None
    if not new_folder:
        schema = _schema_advice(target / _SCHEMA, f"{functions_rel}/{_SCHEMA}", shipped / _SCHEMA)
    versions = _check_versions(project, shipped / "package.json") if has_package else []
    return InitPlan(
        project=project,
        functions_dir=functions_rel,
        new_folder=new_folder,
        steps=steps,
        schema=schema,
        versions=versions,
        force=force,
    )


def apply_init(plan: InitPlan) -> None:
    """Write the plan's files; `ProjectSetupError` (and nothing written) if any is a conflict."""
    plan.refuse_conflicts()
    for step in plan.steps:
        if step.action == "unchanged":
            continue
        destination = plan.project / step.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(f".{destination.name}.convex-offload-tmp")
        tmp.write_bytes(_contents(step.source, step.rewrite))
        shutil.copymode(step.source, tmp)
        tmp.replace(destination)


# --- files -----------------------------------------------------------------------------------


def _functions_folder(project: Path) -> str:
    config = project / "convex.json"
    if not config.is_file():
        return "convex"
    data = _read_json(config)
    folder = data.get("functions", "convex") if isinstance(data, dict) else "convex"
    if not isinstance(folder, str) or not folder.strip("/"):
        raise ProjectSetupError(f"{config}: `functions` must be a folder name")
    rel = Path(folder.strip("/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ProjectSetupError(f"{config}: `functions` {folder!r} must be a folder inside the project")
    return rel.as_posix()


def _step(
    project: Path, rel: str, source: Path, force: bool, rewrite: dict[str, Any] | None = None
) -> FileStep:
    destination = project / rel
    action: Action
    if not destination.exists():
        action = "create"
    elif destination.is_file() and destination.read_bytes() == _contents(source, rewrite):
        action = "unchanged"
    else:
        action = "overwrite" if force else "conflict"
    return FileStep(path=rel, action=action, source=source, rewrite=rewrite)


def _contents(source: Path, rewrite: dict[str, Any] | None) -> bytes:
    if rewrite is None:
        return source.read_bytes()
    data = json.loads(source.read_text(encoding="utf-8"))
    data.update(rewrite)
    root = data.get("packages", {}).get("")
    if isinstance(root, dict) and "name" in rewrite:  # a lock file names the root package twice
        root["name"] = rewrite["name"]
    return (json.dumps(data, indent=2) + "\n").encode()


def _package_name(project: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", project.name.lower()).strip("-._")
    return name or "convex-app"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProjectSetupError(f"cannot read {path}: {exc}") from None


# --- schema ----------------------------------------------------------------------------------

_IMPORT = re.compile(r'import\s*\{([^}]*)\}\s*from\s*"([^"]+)"\s*;')
_ENTRY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,?\s*$", re.MULTILINE)


def shipped_tables(schema_text: str) -> dict[str, str]:
    """The shipped schema's tables: name → the identifier of its definition."""
    body = schema_text.split("defineSchema(", 1)[1]
    return dict(_ENTRY.findall(body))


def _schema_advice(path: Path, rel: str, shipped: Path) -> SchemaAdvice:
    text = shipped.read_text(encoding="utf-8")
    tables = shipped_tables(text)
    source_of = {
        name.strip(): module
        for names, module in _IMPORT.findall(text)
        for name in names.split(",")
        if name.strip()
    }
    present = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    missing = [t for t in tables if not re.search(rf"""(?<![\w$])["']?{re.escape(t)}["']?\s*:""", present)]
    by_module: dict[str, list[str]] = {}
    for table in missing:
        by_module.setdefault(source_of[tables[table]], []).append(tables[table])
    imports = [f'import {{ {", ".join(sorted(n))} }} from "{m}";' for m, n in by_module.items()]
    return SchemaAdvice(
        path=rel,
        missing_tables=missing,
        imports=imports,
        entries=[f"{table}: {tables[table]}," for table in missing],
    )


# --- versions --------------------------------------------------------------------------------


def _check_versions(project: Path, shipped_manifest: Path) -> list[VersionCheck]:
    manifest = _read_json(project / "package.json")
    if not isinstance(manifest, dict):
        raise ProjectSetupError(f"{project / 'package.json'} is not a JSON object")
    declared: dict[str, str] = {}
    for section in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        entries = manifest.get(section)
        if isinstance(entries, dict):
            for name, spec in entries.items():
                if isinstance(spec, str):
                    declared.setdefault(name, spec)
    tested = _read_json(shipped_manifest).get("dependencies", {})
    return [
        check_version(
            package,
            supported,
            tested=tested[package],
            declared=declared.get(package),
            resolved=_resolved_version(project, package),
        )
        for package, supported in SUPPORTED_RANGES.items()
    ]


def _resolved_version(project: Path, package: str) -> str | None:
    installed = project / "node_modules" / package / "package.json"
    if installed.is_file():
        with_version = _read_json(installed)
        if isinstance(with_version, dict) and isinstance(with_version.get("version"), str):
            return str(with_version["version"])
    lock = project / "package-lock.json"
    if lock.is_file():
        entry = _read_json(lock).get("packages", {}).get(f"node_modules/{package}")
        if isinstance(entry, dict) and isinstance(entry.get("version"), str):
            return str(entry["version"])
    return None


def check_version(
    package: str, supported: str, *, tested: str, declared: str | None, resolved: str | None
) -> VersionCheck:
    """Judge one package: the resolved version if known, else what the declared range admits."""
    pin = f'"{package}": "{tested}"'

    def verdict(status: Literal["ok", "wider", "unsupported", "missing"], advice: str) -> VersionCheck:
        return VersionCheck(package, supported, tested, declared, resolved, status, advice)

    if declared is None:
        return verdict("missing", f"add {pin} to package.json's dependencies")
    if resolved is not None and not _satisfies(resolved, supported):
        return verdict(
            "unsupported",
            f"{package} {resolved} is installed, this release supports {supported}: set {pin} and reinstall",
        )
    if nodesemver.valid_range(declared, loose=False) is None:
        return verdict("unsupported", f"cannot read the range {declared!r}: set {pin}")
    if not _satisfies(tested, declared) and (resolved is None or not _satisfies(resolved, declared)):
        return verdict(
            "unsupported", f'"{package}": "{declared}" excludes the supported {supported}: set {pin}'
        )
    outside = [probe for probe in _probes(supported) if _satisfies(probe, declared)]
    if outside:
        note = f" (it is {resolved} now)" if resolved is not None else ""
        return verdict(
            "wider",
            f'"{package}": "{declared}" also admits untested versions such as {outside[0]}{note}: '
            f"consider {pin}",
        )
    return verdict("ok", f"{package} {resolved or declared} is supported")


def _satisfies(version: str, spec: str) -> bool:
    return bool(nodesemver.satisfies(version, spec, loose=False))


def _probes(supported: str) -> list[str]:
    """Versions just outside `>=A <B`: the release before A and B itself."""
    match = re.fullmatch(r">=(\d+)\.(\d+)\.(\d+) <(\d+\.\d+\.\d+)", supported)
    if match is None:
        raise ValueError(f"supported range {supported!r} is not of the form >=A <B")
    major, minor, patch = (int(part) for part in match.group(1, 2, 3))
    below = (
        f"{major}.{minor}.{patch - 1}"
        if patch
        else (f"{major}.{minor - 1}.999" if minor else (f"{major - 1}.999.999" if major else None))
    )
    return [probe for probe in (below, match.group(4)) if probe is not None]
