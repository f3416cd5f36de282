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
    InvalidInputError,
    InvalidValueError,
    LimitExceededError,
    MalformedAttachmentError,
    NotFoundError,
    OffloadError,
    RecordTooLargeError,
    StorageOperationError,
    UploadError,
)
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.cache import ConvexServerCache
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
from convex_offload.store.native_vector import ConvexNativeVector, NativeVectorIndex
from convex_offload.store.om_models import (
    ActivatedChunk,
    BufferedObservationChunk,
    BufferedObservationChunkInput,
    ObservationalMemoryRecord,
    SwapBufferedToActiveResult,
)
from convex_offload.store.store import ConvexStore
from convex_offload.store.vectors import ConvexVector

__version__ = "0.1.0"

__all__ = [
    "ActivatedChunk",
    "AttachmentIntegrityError",
    "AttachmentMissingError",
    "AttachmentPolicyError",
    "BucketConfig",
    "BucketConfigError",
    "BufferedObservationChunk",
    "BufferedObservationChunkInput",
    "ConvexAuthError",
    "ConvexClient",
    "ConvexError",
    "ConvexFunctionError",
    "ConvexNativeVector",
    "ConvexOffloadError",
    "ConvexRequestError",
    "ConvexServerCache",
    "ConvexStore",
    "ConvexTransportError",
    "ConvexVector",
    "DateRange",
    "ForbiddenReferenceError",
    "InvalidInputError",
    "InvalidValueError",
    "LimitExceededError",
    "MalformedAttachmentError",
    "Message",
    "MessageInclude",
    "MessageUpdate",
    "NativeVectorIndex",
    "NotFoundError",
    "ObservationalMemoryRecord",
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
    "SwapBufferedToActiveResult",
    "Thread",
    "UploadError",
    "WorkflowRun",
]
