// Convex file storage for offloaded attachments. Internal functions: only a caller holding the
// deployment's admin key (the Python library) can reach them, never a browser.
import { v } from "convex/values";
import { internalMutation, internalQuery } from "../_generated/server";

/** A short-lived URL that accepts one POST of the file's bytes and answers `{storageId}`. */
export const generateUploadUrl = internalMutation({
  args: {},
  returns: v.string(),
  handler: async (ctx) => await ctx.storage.generateUploadUrl(),
});

/** The unauthenticated GET URL of a stored file, or null when it does not exist. */
export const getUrl = internalQuery({
  args: { storageId: v.id("_storage") },
  returns: v.union(v.string(), v.null()),
  handler: async (ctx, { storageId }) => await ctx.storage.getUrl(storageId),
});

/** Delete a stored file; deleting a file that is already gone is not an error. */
export const deleteFile = internalMutation({
  args: { storageId: v.id("_storage") },
  returns: v.boolean(),
  handler: async (ctx, { storageId }) => {
    const existing = await ctx.db.system.get(storageId);
    if (existing === null) return false;
    await ctx.storage.delete(storageId);
    return true;
  },
});

/** Size, sha256 and content type Convex recorded for a stored file, or null. */
export const getMetadata = internalQuery({
  args: { storageId: v.id("_storage") },
  returns: v.union(
    v.object({
      storageId: v.id("_storage"),
      sha256: v.string(),
      size: v.number(),
      contentType: v.optional(v.string()),
      creationTime: v.number(),
    }),
    v.null(),
  ),
  handler: async (ctx, { storageId }) => {
    const doc = await ctx.db.system.get(storageId);
    if (doc === null) return null;
    return {
      storageId: doc._id,
      sha256: doc.sha256,
      size: doc.size,
      ...(doc.contentType !== undefined ? { contentType: doc.contentType } : {}),
      creationTime: doc._creationTime,
    };
  },
});
