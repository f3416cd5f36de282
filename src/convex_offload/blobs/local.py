"""A bucket in a local folder: the embedded default for the demo and for development."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from convex_offload.blobs.base import READ_CHUNK, ObjectInfo, check_key, public_url
from convex_offload.errors import AttachmentIntegrityError, BlobStoreError
from convex_offload.signing import signed_url

_META = ".meta.json"
T = TypeVar("T")


class LocalBlobStore:
    """Objects as files under `path`; each has a `<key>.meta.json` beside it."""

    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        public_base_url: str | None = None,
        serve_url: str | None = None,
        signing_key: SecretStr | None = None,
        max_workers: int = 16,
    ) -> None:
        self.name = name
        self.public_base_url = public_base_url
        self.serve_url = serve_url
        """Where `convex-offload dev` serves this folder (access URLs are then signed HTTP URLs)."""
        self.signing_key = signing_key
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"local-{name}")
        self.root = Path(path).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobStoreError(str(exc), bucket=name, key="", operation="create folder") from None

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.name!r}, {str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """Write the object atomically (temp file, fsync, rename)."""
        meta = {"content_type": content_type, "sha256": sha256, "disposition": disposition, "size": len(data)}
        await self._run("PutObject", key, self._write, self._path(key), data, sha256, meta)

    def _write(self, path: Path, data: bytes | bytearray, sha256: str, meta: Mapping[str, object]) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise AttachmentIntegrityError(
                "bytes do not match their sha256 before upload", bucket=self.name, key=str(path)
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # The sidecar is rewritten whole (rename) but not fsynced: it only repeats what the
        # manifest says (type, sha256), and one fsync per object is what a durable write costs.
        _atomic_write(path.with_name(path.name + _META), json.dumps(meta).encode(), durable=False)
        _atomic_write(path, data)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        return await self._run("GetObject", key, _read_or_none, self._path(key))

    async def read_with(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T | None:
        """The file read in chunks into `consume`, on the file threads; None when missing."""
        return await self._run("GetObject", key, _read_with, self._path(key), consume)

    async def head(self, key: str) -> ObjectInfo | None:
        """Size, type and sha256 of the object, or None."""
        return await self._run("HeadObject", key, self._head, key)

    def _head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(path.with_name(path.name + _META).read_text())
        except (FileNotFoundError, ValueError):
            meta = {}
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            content_type=meta.get("content_type"),
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            sha256=meta.get("sha256"),
            disposition=meta.get("disposition"),
        )

    async def delete(self, key: str) -> None:
        """Remove the object and its metadata file."""
        path = self._path(key)
        await self._run("DeleteObject", key, _unlink_all, path, path.with_name(path.name + _META))

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects under `prefix`, in key order."""
        keys = await self._run("ListObjects", "", self._keys)
        for key in keys:
            if key.startswith(prefix):
                info = await self.head(key)
                if info is not None:
                    yield info

    def _keys(self) -> list[str]:
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for file in files:
                if file.endswith(_META) or file.startswith(".tmp-"):
                    continue
                found.append(Path(dirpath, file).relative_to(self.root).as_posix())
        return sorted(found)

    async def reference_url(self, key: str) -> str:
        """`public_base_url/key` when set, else `local://<bucket>/<key>`."""
        return self._reference(key)

    def is_reference_url(self, key: str, url: str) -> bool:
        """Whether `url` is this folder's reference URL of `key`."""
        return url == self._reference(key)

    def _reference(self, key: str) -> str:
        if self.public_base_url:
            return public_url(self.public_base_url, key)
        return f"local://{self.name}/{check_key(key)}"

    async def access_url(self, key: str, ttl: int) -> str:
        """The public URL when configured; a signed URL valid `ttl` seconds when the folder is
        served (`serve_url`, by `convex-offload dev`); else a `file://` URL (no web page loads it)."""
        if self.public_base_url:
            return public_url(self.public_base_url, key)
        if self.serve_url is not None and self.signing_key is not None:
            secret = self.signing_key.get_secret_value()
            return signed_url(self.serve_url, self.name, check_key(key), secret=secret, ttl=ttl)
        return self._path(key).as_uri()

    async def _run(self, operation: str, key: str, fn: Callable[..., T], /, *args: Any) -> T:
        """Run a file operation in a thread; its OS errors become `BlobStoreError`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        except OSError as exc:
            raise BlobStoreError(
                f"{type(exc).__name__}: {exc.strerror or exc}", bucket=self.name, key=key, operation=operation
            ) from None

    async def aclose(self) -> None:
        """Stop the file threads."""
        self._pool.shutdown(wait=True)


def _atomic_write(path: Path, data: bytes | bytearray, *, durable: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _read_with(path: Path, consume: Callable[[Iterator[bytes]], T]) -> T | None:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        return consume(iter(functools.partial(handle.read, READ_CHUNK), b""))


def _unlink_all(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
