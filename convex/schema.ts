// The Convex schema for convex-offload: every table @mastra/convex/schema exports, under the name
// its storage and cache handlers use (tests/test_convex_folder.py checks both against the installed
// package), plus this project's own `offload_refs` and `offload_files` tables.
import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";
import {
  mastraBackgroundTasksTable,
  mastraCacheListItemsTable,
  mastraCacheTable,
  mastraChannelConfigTable,
  mastraChannelInstallationsTable,
  mastraDocumentsTable,
  mastraMessagesTable,
  mastraObservationalMemoryTable,
  mastraResourcesTable,
  mastraScheduleTriggersTable,
  mastraSchedulesTable,
  mastraScoresTable,
  mastraThreadsTable,
  mastraVectorIndexesTable,
  mastraVectorsTable,
  mastraWorkflowSnapshotsTable,
} from "@mastra/convex/schema";

// Who references each offloaded object. One row per (object, owner):
// - `committed`: `owner` is a stored record (`<table>:<record id>`, or `<table>:<id>/step/<step>` for a
//   workflow step result) whose manifest references the object; written in the same transaction as
//   the record itself (offload/records:write), so a row exists exactly while the record references it.
// - `pending`: a writer's lease (`token`) between reserving the object and writing its record; it
//   expires at `expiresAt` if the writer never comes back.
// - `deleting`: the garbage collector's claim on an object nobody references, while it deletes it.
export const offloadRefsTable = defineTable({
  bucket: v.string(),
  key: v.string(),
  tenant: v.string(),
  owner: v.string(),
  state: v.union(v.literal("pending"), v.literal("committed"), v.literal("deleting")),
  token: v.optional(v.string()),
  expiresAt: v.optional(v.number()),
  size: v.number(),
  sha256: v.string(),
  createdAt: v.number(),
})
  .index("by_object", ["bucket", "key"])
  .index("by_owner", ["owner"])
  .index("by_token", ["token"])
  .index("by_state", ["state", "expiresAt"]);

// Objects of a `convex` bucket: the logical, content-addressed key of each stored file.
export const offloadFilesTable = defineTable({
  key: v.string(),
  storageId: v.id("_storage"),
  sha256: v.string(),
  size: v.number(),
  contentType: v.string(),
  disposition: v.optional(v.string()),
  createdAt: v.number(),
}).index("by_key", ["key"]);

export default defineSchema({
  mastra_threads: mastraThreadsTable,
  mastra_messages: mastraMessagesTable,
  mastra_resources: mastraResourcesTable,
  mastra_workflow_snapshots: mastraWorkflowSnapshotsTable,
  mastra_scorers: mastraScoresTable,
  mastra_schedules: mastraSchedulesTable,
  mastra_schedule_triggers: mastraScheduleTriggersTable,
  mastra_channel_installations: mastraChannelInstallationsTable,
  mastra_channel_config: mastraChannelConfigTable,
  mastra_background_tasks: mastraBackgroundTasksTable,
  mastra_observational_memory: mastraObservationalMemoryTable,
  mastra_vector_indexes: mastraVectorIndexesTable,
  mastra_vectors: mastraVectorsTable,
  mastra_cache: mastraCacheTable,
  mastra_cache_list_items: mastraCacheListItemsTable,
  mastra_documents: mastraDocumentsTable,
  offload_refs: offloadRefsTable,
  offload_files: offloadFilesTable,
});
