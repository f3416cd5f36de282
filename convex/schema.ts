// The Convex schema for convex-offload: every table @mastra/convex/schema exports, under the name
// its storage and cache handlers use (tests/test_convex_folder.py checks both against the installed
// package), plus this project's own `offload_refs` and `offload_files` tables.
import { defineSchema } from "convex/server";
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
import { offloadFilesTable, offloadRefsTable } from "./offload/tables";

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
