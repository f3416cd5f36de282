"""convex-offload: a Python ConvexStore for @mastra/convex, with base64 attachments offloaded.

`ConvexStore` speaks @mastra/convex's wire protocol; `OffloadingStore` wraps it and keeps
attachments in S3, R2, Convex file storage or a folder. Configuration: `OffloadConfig`.
"""

from convex_offload.config import BucketConfig, OffloadConfig, RoutingRule
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import (
    AttachmentIntegrityError,
    AttachmentMissingError,
    AttachmentPolicyError,
    BucketConfigError,
    ConvexAuthError,
    ConvexError,
    ConvexFunctionError,
    ConvexOffloadError,
    ConvexRequestError,
    ConvexTransportError,
    ForbiddenReferenceError,
    HistoryConflictError,
    InvalidInputError,
    InvalidValueError,
    LimitExceededError,
    MalformedAttachmentError,
    MissingDependencyError,
    NotFoundError,
    OffloadError,
    RecordTooLargeError,
    StorageOperationError,
    UploadError,
)
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import (
    DateRange,
    Message,
    MessageInclude,
    MessageUpdate,
    OrderBy,
    Resource,
    Score,
    ScorePayload,
    Thread,
    WorkflowRun,
)
from convex_offload.store.store import ConvexStore
from convex_offload.store.vectors import ConvexVector

__version__ = "0.1.0"

__all__ = [
    "AttachmentIntegrityError",
    "AttachmentMissingError",
    "AttachmentPolicyError",
    "BucketConfig",
    "BucketConfigError",
    "ConvexAuthError",
    "ConvexClient",
    "ConvexError",
    "ConvexFunctionError",
    "ConvexOffloadError",
    "ConvexRequestError",
    "ConvexStore",
    "ConvexTransportError",
    "ConvexVector",
    "DateRange",
    "ForbiddenReferenceError",
    "HistoryConflictError",
    "InvalidInputError",
    "InvalidValueError",
    "LimitExceededError",
    "MalformedAttachmentError",
    "Message",
    "MessageInclude",
    "MessageUpdate",
    "MissingDependencyError",
    "NotFoundError",
    "OffloadConfig",
    "OffloadError",
    "OffloadingStore",
    "OrderBy",
    "RecordTooLargeError",
    "Resource",
    "RoutingRule",
    "Score",
    "ScorePayload",
    "StorageOperationError",
    "Thread",
    "UploadError",
    "WorkflowRun",
]
