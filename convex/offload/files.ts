// Convex file storage for offloaded attachments. Internal functions: only a caller holding the
// deployment's admin key (the Python library) can reach them, never a browser.
import { v } from "convex/values";
import { internalMutation, internalQuery, type QueryCtx } from "../_generated/server";
import { offloadFileFields } from "./tables";

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

async function fileByKey(ctx: QueryCtx, key: string) {
  return await ctx.db
    .query("offload_files")
    .withIndex("by_key", (q) => q.eq("key", key))
    .unique();
}

const fileEntry = v.object({ ...offloadFileFields, url: v.union(v.string(), v.null()) });

/** The stored file behind a logical key, with its current URL, or null. */
export const lookup = internalQuery({
  args: { key: v.string() },
  returns: v.union(fileEntry, v.null()),
  handler: async (ctx, { key }) => {
    const row = await fileByKey(ctx, key);
    if (row === null) return null;
    const { _id, _creationTime, ...entry } = row;
    return { ...entry, url: await ctx.storage.getUrl(row.storageId) };
  },
});

/**
 * Record that `storageId` holds the object `key`. If another writer recorded the same key first,
 * the new file is a duplicate: it is deleted and the existing entry wins (answers `created: false`).
 */
export const commit = internalMutation({
  args: {
    key: v.string(),
    storageId: v.id("_storage"),
    sha256: v.string(),
    size: v.number(),
    contentType: v.string(),
    disposition: v.optional(v.string()),
  },
  returns: v.object({ created: v.boolean(), url: v.union(v.string(), v.null()) }),
  handler: async (ctx, args) => {
    const stored = await ctx.db.system.get(args.storageId);
    if (stored === null) throw new Error(`storage file ${args.storageId} does not exist`);
    if (stored.size !== args.size) {
      await ctx.storage.delete(args.storageId);
      throw new Error(`storage file ${args.storageId} has ${stored.size} bytes, expected ${args.size}`);
    }
    const existing = await fileByKey(ctx, args.key);
    if (existing !== null) {
      if (existing.storageId !== args.storageId) await ctx.storage.delete(args.storageId);
      return { created: false, url: await ctx.storage.getUrl(existing.storageId) };
    }
    await ctx.db.insert("offload_files", { ...args, createdAt: Date.now() });
    return { created: true, url: await ctx.storage.getUrl(args.storageId) };
  },
});

/** Delete the object `key` (its entry and its file); false when there was none. */
export const deleteByKey = internalMutation({
  args: { key: v.string() },
  returns: v.boolean(),
  handler: async (ctx, { key }) => {
    const row = await fileByKey(ctx, key);
    if (row === null) return false;
    await ctx.db.delete(row._id);
    if ((await ctx.db.system.get(row.storageId)) !== null) await ctx.storage.delete(row.storageId);
    return true;
  },
});

/** One page of objects whose key starts with `prefix`, in key order. */
export const list = internalQuery({
  args: { prefix: v.string(), cursor: v.union(v.string(), v.null()), pageSize: v.number() },
  returns: v.object({
    page: v.array(
      v.object({ key: v.string(), size: v.number(), sha256: v.string(), contentType: v.string(), createdAt: v.number() }),
    ),
    isDone: v.boolean(),
    continueCursor: v.string(),
  }),
  handler: async (ctx, { prefix, cursor, pageSize }) => {
    const result = await ctx.db
      .query("offload_files")
      .withIndex("by_key", (q) => q.gte("key", prefix).lt("key", prefix + "\uffff"))
      .paginate({ cursor, numItems: Math.max(1, Math.min(pageSize, 1000)) });
    return {
      page: result.page.map(({ key, size, sha256, contentType, createdAt }) => ({ key, size, sha256, contentType, createdAt })),
      isDone: result.isDone,
      continueCursor: result.continueCursor,
    };
  },
});
