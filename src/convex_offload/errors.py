"""Every error convex-offload raises, in one hierarchy rooted at `ConvexOffloadError`.

    ConvexOffloadError
    ├── ConvexError                   talking to Convex failed
    │   ├── ConvexTransportError      network trouble or 5xx after bounded retries
    │   ├── ConvexAuthError           the admin key was refused
    │   ├── ConvexRequestError        Convex refused the request itself (4xx)
    │   └── ConvexFunctionError       the function ran and failed (HTTP 560)
    │       ├── RecordTooLargeError   a document over Convex's 1 MiB limit
    │       ├── LimitExceededError    a per-transaction read/write limit
    │       └── StorageOperationError the @mastra/convex handler answered ok:false
    ├── InvalidInputError             bad arguments, refused before anything is sent
    │   └── InvalidValueError         a value Convex would refuse (field names, depth, sizes)
    ├── NotFoundError                 a thread/resource/run that does not exist
    ├── OffloadError                  attachment offloading
    │   ├── MalformedAttachmentError  base64/data URL that does not decode strictly
    │   ├── AttachmentPolicyError     refused by policy (type, size, active content)
    │   ├── UploadError               an upload failed; nothing was written
    │   ├── AttachmentMissingError    a referenced object is gone
    │   ├── AttachmentIntegrityError  an object's bytes do not match its sha256
    │   ├── ForbiddenReferenceError   a manifest pointing outside its bucket/tenant, or forged
    │   ├── UnsupportedManifestError  a manifest of a version this library does not read
    │   └── BlobStoreError            a bucket operation failed (carries bucket and key)
    ├── BucketConfigError             configuration that cannot work
    └── RecordKindError               a record kind description that cannot work

Messages name what was wrong. No error ever carries an admin key or a secret.
"""

from __future__ import annotations

from typing import Any


class ConvexOffloadError(Exception):
    """Base class of every error raised by convex-offload."""


# --- Convex -----------------------------------------------------------------------------------


class ConvexError(ConvexOffloadError):
    """Talking to Convex failed."""


class ConvexTransportError(ConvexError):
    """Convex could not be reached or answered 5xx, after the bounded retries."""


class ConvexAuthError(ConvexError):
    """Convex refused the admin key (HTTP 401/403)."""


class ConvexRequestError(ConvexError):
    """Convex refused the request itself (HTTP 4xx): unknown function, malformed arguments."""

    def __init__(self, message: str, *, status_code: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class ConvexFunctionError(ConvexError):
    """A Convex function ran and failed; its whole transaction was rolled back.

    `convex_message` is Convex's `errorMessage`; `data` is `errorData` (only for `ConvexError`).
    """

    def __init__(self, message: str, *, path: str, convex_message: str, data: Any = None) -> None:
        super().__init__(message)
        self.path = path
        self.convex_message = convex_message
        self.data = data


class RecordTooLargeError(ConvexFunctionError):
    """A document over Convex's 1 MiB limit (raised by Convex, or by us before sending)."""


class LimitExceededError(ConvexFunctionError):
    """A per-transaction limit (bytes or documents read/written, queries) was exceeded."""


class StorageOperationError(ConvexFunctionError):
    """The @mastra/convex storage handler answered `{ok: false, error}`."""


# --- Input ------------------------------------------------------------------------------------


class InvalidInputError(ConvexOffloadError, ValueError):
    """Arguments that cannot be right; raised before anything is sent."""


class InvalidValueError(InvalidInputError):
    """A value Convex would refuse: a reserved field name, too deep, too many fields."""


class NotFoundError(ConvexOffloadError, LookupError):
    """The thread, resource, message or workflow run named does not exist."""


# --- Offloading -------------------------------------------------------------------------------


class OffloadError(ConvexOffloadError):
    """Attachment offloading or restoring failed."""


class MalformedAttachmentError(OffloadError, InvalidInputError):
    """A base64 payload or data URL that does not decode strictly."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class AttachmentPolicyError(OffloadError, InvalidInputError):
    """An attachment refused by policy: its type, its size, active content."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class UploadError(OffloadError):
    """An upload failed; no record referencing it was written."""

    def __init__(self, message: str, *, path: str, bucket: str, key: str) -> None:
        super().__init__(f"{path}: upload to bucket {bucket!r} failed: {message}")
        self.path = path
        self.bucket = bucket
        self.key = key


class AttachmentMissingError(OffloadError):
    """A record references an object that is not in its bucket."""

    def __init__(self, *, bucket: str, key: str, path: str = "") -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}object {key!r} is missing from bucket {bucket!r}")
        self.bucket = bucket
        self.key = key
        self.path = path


class AttachmentIntegrityError(OffloadError):
    """An object's bytes do not match the sha256 or size its manifest recorded."""

    def __init__(self, message: str, *, bucket: str, key: str) -> None:
        super().__init__(f"object {key!r} in bucket {bucket!r}: {message}")
        self.bucket = bucket
        self.key = key


class ForbiddenReferenceError(OffloadError):
    """A manifest that points at another tenant's key, outside the configured buckets, or holds a
    URL this library would not have written."""


class UnsupportedManifestError(OffloadError):
    """A record's manifest has a version this library does not read (written by a newer one)."""

    def __init__(self, message: str, *, record: str, version: object) -> None:
        super().__init__(message)
        self.record = record
        self.version = version


class BlobStoreError(OffloadError):
    """A bucket operation (put, get, head, delete, list, sign) failed after the backend's retries.

    `bucket` is the configured bucket's name, `key` the object's key (empty for listings),
    `operation` what was attempted.
    """

    def __init__(self, message: str, *, bucket: str, key: str, operation: str) -> None:
        where = f" {key!r}" if key else ""
        super().__init__(f"bucket {bucket!r}: {operation}{where} failed: {message}")
        self.bucket = bucket
        self.key = key
        self.operation = operation


class BucketConfigError(ConvexOffloadError, ValueError):
    """Bucket or routing configuration that cannot work; the message names the field."""


class RecordKindError(ConvexOffloadError, ValueError):
    """A record kind description that cannot work, or a kind no store knows; names kind and field."""


# --- Stored records (schedules, background tasks, channels) ------------------------------------


class AlreadyExistsError(ConvexFunctionError):
    """A record with this id already exists (a schedule or a schedule trigger); nothing was written."""


class InvalidRecordError(ConvexOffloadError, ValueError):
    """A stored row cannot be read as the record it should be (bad JSON, a target without a type)."""


# --- Agent-framework bridges ------------------------------------------------------------------


class MissingDependencyError(ConvexOffloadError, ImportError):
    """An integration's framework is not installed; the message names the extra to install."""

    def __init__(self, *, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'convex-offload[{extra}]'")
        self.package = package
        self.extra = extra


class HistoryConflictError(InvalidInputError):
    """An agent history that does not start with the messages its thread already holds."""


# --- Development tools (the command line's init, demo and dev) --------------------------------


class DevToolsError(ConvexOffloadError, RuntimeError):
    """A local development tool could not be set up or started (Node.js, npm, a local server)."""


class ToolMissingError(DevToolsError):
    """A program the command needs (node, npm) is missing or too old; the message says which."""


class ProjectSetupError(ConvexOffloadError):
    """`init` cannot put the Convex functions into the project as asked; nothing was written."""
