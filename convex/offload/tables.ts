// This project's own tables, beside @mastra/convex's: a project with its own schema.ts adds them
// to its defineSchema({...}) (`convex-offload init` prints how).
import { defineTable } from "convex/server";
import { v } from "convex/values";

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
export const offloadFileFields = {
  key: v.string(),
  storageId: v.id("_storage"),
  sha256: v.string(),
  size: v.number(),
  contentType: v.string(),
  disposition: v.optional(v.string()),
  createdAt: v.number(),
};
export const offloadFilesTable = defineTable(offloadFileFields).index("by_key", ["key"]);
