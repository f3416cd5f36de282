"""convex-offload: a Python ConvexStore for @mastra/convex, with base64 attachments offloaded.

`ConvexStore` speaks @mastra/convex's wire protocol; `OffloadingStore` wraps it and keeps
attachments in S3, R2, Convex file storage or a folder. Configuration: `OffloadConfig`.
"""

from convex_offload.blobs.base import BlobStore, ObjectInfo
from convex_offload.blobs.convex_files import ConvexFilesBlobStore
from convex_offload.blobs.local import LocalBlobStore
from convex_offload.blobs.memory import MemoryBlobStore
from convex_offload.blobs.s3 import S3BlobStore, S3Connection
from convex_offload.config import BucketConfig, OffloadConfig, RoutingRule
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import (
    AlreadyExistsError,
    AttachmentIntegrityError,
    AttachmentMissingError,
    AttachmentPolicyError,
    BlobStoreError,
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
    InvalidRecordError,
    InvalidValueError,
    LimitExceededError,
    MalformedAttachmentError,
    MissingDependencyError,
    NotFoundError,
    OffloadError,
    RecordKindError,
    RecordTooLargeError,
    StorageOperationError,
    UnsupportedManifestError,
    UploadError,
)
from convex_offload.offload.background_tasks import OffloadingBackgroundTasks
from convex_offload.offload.kinds import RecordKind, RecordKinds
from convex_offload.offload.lifecycle import Checkpoint, DeletionReport, GcReport
from convex_offload.offload.manifest import Manifest, Ref
from convex_offload.offload.memory import OffloadingMemory
from convex_offload.offload.offloader import Offloader
from convex_offload.offload.operations import MigrateReport, StatsReport, VerifyReport
from convex_offload.offload.policy import PlannedObject, PlannedTree
from convex_offload.offload.records import OffloadedRecords
from convex_offload.offload.registry import ObjectRef
from convex_offload.offload.restorer import RestoreMode
from convex_offload.offload.rewriter import Rewritten
from convex_offload.offload.stats import OffloadStats
from convex_offload.offload.store import OffloadingStore
from convex_offload.offload.transaction import Change, Write, WriteResult, WriteTransaction
from convex_offload.offload.workflows import OffloadingWorkflows
from convex_offload.store.background_tasks import BackgroundTaskStore
from convex_offload.store.cache import ConvexServerCache
from convex_offload.store.channels import ChannelStore
from convex_offload.store.memory import MemoryStore
from convex_offload.store.models import (
    DateRange,
    Message,
    MessageInclude,
    MessagesPage,
    MessageUpdate,
    OrderBy,
    Resource,
    Score,
    ScorePayload,
    ScoresPage,
    Thread,
    ThreadsPage,
    WorkflowRun,
    WorkflowRunsPage,
)
from convex_offload.store.models_background_tasks import (
    BackgroundTask,
    TaskFilter,
    TaskListResult,
    TaskUpdate,
)
from convex_offload.store.models_channels import ChannelConfig, ChannelInstallation
from convex_offload.store.models_schedules import (
    UNSET,
    AgentScheduleTarget,
    Schedule,
    ScheduleTrigger,
    ScheduleUpdate,
    Unset,
    WorkflowScheduleTarget,
)
from convex_offload.store.native_vector import ConvexNativeVector, NativeVectorIndex
from convex_offload.store.om_models import (
    ActivatedChunk,
    BufferedObservationChunk,
    BufferedObservationChunkInput,
    ObservationalMemoryRecord,
    SwapBufferedToActiveResult,
)
from convex_offload.store.paging import PerPage
from convex_offload.store.schedules import ScheduleStore
from convex_offload.store.scores import ScoreStore
from convex_offload.store.store import ConvexStore, DomainName
from convex_offload.store.vectors import ConvexVector, IndexStats, QueryResult
from convex_offload.store.workflows import WorkflowStore
from convex_offload.sync import (
    Portal,
    SyncBackgroundTasks,
    SyncChannels,
    SyncConvexNativeVector,
    SyncConvexServerCache,
    SyncConvexStore,
    SyncConvexVector,
    SyncMemory,
    SyncOffloadingStore,
    SyncRecords,
    SyncSchedules,
    SyncScores,
    SyncWorkflows,
)

__version__ = "0.1.0"

__all__ = [
    "UNSET",
    "ActivatedChunk",
    "AgentScheduleTarget",
    "AlreadyExistsError",
    "AttachmentIntegrityError",
    "AttachmentMissingError",
    "AttachmentPolicyError",
    "BackgroundTask",
    "BackgroundTaskStore",
    "BlobStore",
    "BlobStoreError",
    "BucketConfig",
    "BucketConfigError",
    "BufferedObservationChunk",
    "BufferedObservationChunkInput",
    "Change",
    "ChannelConfig",
    "ChannelInstallation",
    "ChannelStore",
    "Checkpoint",
    "ConvexAuthError",
    "ConvexClient",
    "ConvexError",
    "ConvexFilesBlobStore",
    "ConvexFunctionError",
    "ConvexNativeVector",
    "ConvexOffloadError",
    "ConvexRequestError",
    "ConvexServerCache",
    "ConvexStore",
    "ConvexTransportError",
    "ConvexVector",
    "DateRange",
    "DeletionReport",
    "DomainName",
    "ForbiddenReferenceError",
    "GcReport",
    "HistoryConflictError",
    "IndexStats",
    "InvalidInputError",
    "InvalidRecordError",
    "InvalidValueError",
    "LimitExceededError",
    "LocalBlobStore",
    "MalformedAttachmentError",
    "Manifest",
    "MemoryBlobStore",
    "MemoryStore",
    "Message",
    "MessageInclude",
    "MessageUpdate",
    "MessagesPage",
    "MigrateReport",
    "MissingDependencyError",
    "NativeVectorIndex",
    "NotFoundError",
    "ObjectInfo",
    "ObjectRef",
    "ObservationalMemoryRecord",
    "OffloadConfig",
    "OffloadError",
    "OffloadStats",
    "OffloadedRecords",
    "Offloader",
    "OffloadingBackgroundTasks",
    "OffloadingMemory",
    "OffloadingStore",
    "OffloadingWorkflows",
    "OrderBy",
    "PerPage",
    "PlannedObject",
    "PlannedTree",
    "Portal",
    "QueryResult",
    "RecordKind",
    "RecordKindError",
    "RecordKinds",
    "RecordTooLargeError",
    "Ref",
    "Resource",
    "RestoreMode",
    "Rewritten",
    "RoutingRule",
    "S3BlobStore",
    "S3Connection",
    "Schedule",
    "ScheduleStore",
    "ScheduleTrigger",
    "ScheduleUpdate",
    "Score",
    "ScorePayload",
    "ScoreStore",
    "ScoresPage",
    "StatsReport",
    "StorageOperationError",
    "SwapBufferedToActiveResult",
    "SyncBackgroundTasks",
    "SyncChannels",
    "SyncConvexNativeVector",
    "SyncConvexServerCache",
    "SyncConvexStore",
    "SyncConvexVector",
    "SyncMemory",
    "SyncOffloadingStore",
    "SyncRecords",
    "SyncSchedules",
    "SyncScores",
    "SyncWorkflows",
    "TaskFilter",
    "TaskListResult",
    "TaskUpdate",
    "Thread",
    "ThreadsPage",
    "Unset",
    "UnsupportedManifestError",
    "UploadError",
    "VerifyReport",
    "WorkflowRun",
    "WorkflowRunsPage",
    "WorkflowScheduleTarget",
    "WorkflowStore",
    "Write",
    "WriteResult",
    "WriteTransaction",
]
