// Reference bookkeeping for offloaded objects (see the `offload_refs` table in schema.ts).
// Internal functions: only the Python library, holding the admin key, calls them.
import { v } from "convex/values";
import type { Doc } from "../_generated/dataModel";
import { internalMutation, internalQuery, type MutationCtx, type QueryCtx } from "../_generated/server";
import { catalog, findRecord, ownerRecord, recordRefs } from "./catalog";

export const objectRef = v.object({
  bucket: v.string(),
  key: v.string(),
  tenant: v.string(),
  size: v.number(),
  sha256: v.string(),
});
export const objectKey = v.object({ bucket: v.string(), key: v.string() });

type ObjectKey = { bucket: string; key: string };

export async function rowsOf(ctx: QueryCtx, object: ObjectKey): Promise<Doc<"offload_refs">[]> {
  return await ctx.db
    .query("offload_refs")
    .withIndex("by_object", (q) => q.eq("bucket", object.bucket).eq("key", object.key))
    .collect();
}

/** A row that keeps its object alive at `now`: committed, or a lease not yet expired. */
export function keepsAlive(row: Doc<"offload_refs">, now: number): boolean {
  return row.state === "committed" || (row.state === "pending" && (row.expiresAt ?? 0) > now);
}

/** The garbage collector is deleting this object right now. */
export function beingDeleted(rows: Doc<"offload_refs">[], now: number): boolean {
  return rows.some((row) => row.state === "deleting" && (row.expiresAt ?? 0) > now);
}

/** The objects among `touched` that no row references any more. */
export async function unreferenced(ctx: QueryCtx, touched: Map<string, ObjectKey>): Promise<ObjectKey[]> {
  const free: ObjectKey[] = [];
  for (const object of touched.values()) {
    if ((await rowsOf(ctx, object)).length === 0) free.push(object);
  }
  return free;
}

export function objectId(object: ObjectKey): string {
  return `${object.bucket}\u0000${object.key}`;
}

/**
 * Lease objects before uploading them: one pending row per object, valid until `expiresAt`.
 * `present`: objects some record already references (no upload needed). `busy`: objects the
 * garbage collector is deleting right now; the writer retries them after a moment.
 */
export const reserve = internalMutation({
  args: { token: v.string(), owner: v.string(), expiresAt: v.number(), now: v.number(), objects: v.array(objectRef) },
  returns: v.object({ present: v.array(objectKey), busy: v.array(objectKey) }),
  handler: async (ctx, { token, owner, expiresAt, now, objects }) => {
    const present: ObjectKey[] = [];
    const busy: ObjectKey[] = [];
    for (const object of objects) {
      const rows = await rowsOf(ctx, object);
      if (beingDeleted(rows, now)) {
        busy.push({ bucket: object.bucket, key: object.key });
        continue;
      }
      for (const stale of rows.filter((row) => row.state === "deleting")) await ctx.db.delete(stale._id);
      if (rows.some((row) => row.state === "committed")) present.push({ bucket: object.bucket, key: object.key });
      if (!rows.some((row) => row.state === "pending" && row.token === token)) {
        await ctx.db.insert("offload_refs", { ...object, owner, state: "pending", token, expiresAt, createdAt: now });
      }
    }
    return { present, busy };
  },
});

/** Drop a writer's leases (its write failed); answers the objects nobody references any more. */
export const abandon = internalMutation({
  args: { token: v.string() },
  returns: v.array(objectKey),
  handler: async (ctx, { token }) => {
    const touched = new Map<string, ObjectKey>();
    const rows = await ctx.db.query("offload_refs").withIndex("by_token", (q) => q.eq("token", token)).collect();
    for (const row of rows) {
      touched.set(objectId(row), { bucket: row.bucket, key: row.key });
      await ctx.db.delete(row._id);
    }
    return await unreferenced(ctx, touched);
  },
});

/**
 * The collector's claim on an object before deleting it: granted only when no row keeps the
 * object alive. While the claim holds, `reserve` answers `busy` and `records:write` refuses to
 * reference the object, so a writer can never race the deletion.
 */
async function claimObject(
  ctx: MutationCtx,
  object: ObjectKey,
  token: string,
  now: number,
  expiresAt: number,
): Promise<boolean> {
  const rows = await rowsOf(ctx, object);
  if (rows.some((row) => keepsAlive(row, now)) || beingDeleted(rows, now)) return false;
  for (const row of rows) await ctx.db.delete(row._id);
  await ctx.db.insert("offload_refs", {
    bucket: object.bucket,
    key: object.key,
    tenant: "",
    owner: `gc:${token}`,
    state: "deleting",
    token,
    expiresAt,
    size: 0,
    sha256: "",
    createdAt: now,
  });
  return true;
}

async function finalizeObject(ctx: MutationCtx, object: ObjectKey, token: string): Promise<void> {
  for (const row of await rowsOf(ctx, object)) {
    if (row.state === "deleting" && row.token === token) await ctx.db.delete(row._id);
  }
}

/** Claim objects for deletion under one token, in one transaction (see `claimObject`); answers those granted. */
export const claimMany = internalMutation({
  args: { objects: v.array(objectKey), token: v.string(), now: v.number(), expiresAt: v.number() },
  returns: v.array(objectKey),
  handler: async (ctx, { objects, token, now, expiresAt }) => {
    const granted: ObjectKey[] = [];
    for (const object of objects) {
      if (await claimObject(ctx, object, token, now, expiresAt)) granted.push({ bucket: object.bucket, key: object.key });
    }
    return granted;
  },
});

/** End the claims under `token` once their objects are deleted (or the deletions were given up). */
export const finalizeMany = internalMutation({
  args: { objects: v.array(objectKey), token: v.string() },
  returns: v.null(),
  handler: async (ctx, { objects, token }) => {
    for (const object of objects) await finalizeObject(ctx, object, token);
    return null;
  },
});

/**
 * Delete up to `limit` leases that expired before `now`, and the claims of collectors that died
 * while deleting (expired too); answers the objects left unreferenced.
 */
export const expirePending = internalMutation({
  args: { now: v.number(), limit: v.number() },
  returns: v.object({ expired: v.number(), unreferenced: v.array(objectKey) }),
  handler: async (ctx, { now, limit }) => {
    const take = Math.max(1, Math.min(limit, 500));
    const leases = await ctx.db
      .query("offload_refs")
      .withIndex("by_state", (q) => q.eq("state", "pending").lt("expiresAt", now))
      .take(take);
    const claims = await ctx.db
      .query("offload_refs")
      .withIndex("by_state", (q) => q.eq("state", "deleting").lt("expiresAt", now))
      .take(take);
    const rows = [...leases, ...claims];
    const touched = new Map<string, ObjectKey>();
    for (const row of rows) {
      touched.set(objectId(row), { bucket: row.bucket, key: row.key });
      await ctx.db.delete(row._id);
    }
    return { expired: rows.length, unreferenced: await unreferenced(ctx, touched) };
  },
});

const refRow = v.object({
  bucket: v.string(),
  key: v.string(),
  tenant: v.string(),
  owner: v.string(),
  state: v.string(),
  expiresAt: v.optional(v.number()),
  size: v.number(),
  sha256: v.string(),
  createdAt: v.number(),
});

/** A row as the functions answer it (no system fields, no token). */
function rowView({ bucket, key, tenant, owner, state, expiresAt, size, sha256, createdAt }: Doc<"offload_refs">) {
  return { bucket, key, tenant, owner, state, ...(expiresAt !== undefined ? { expiresAt } : {}), size, sha256, createdAt };
}

/** One page of every row, in (bucket, key) order: for the collector, `verify` and `stats`. */
export const list = internalQuery({
  args: { cursor: v.union(v.string(), v.null()), pageSize: v.number() },
  returns: v.object({ page: v.array(refRow), isDone: v.boolean(), continueCursor: v.string() }),
  handler: async (ctx, { cursor, pageSize }) => {
    const result = await ctx.db
      .query("offload_refs")
      .withIndex("by_object")
      .paginate({ cursor, numItems: Math.max(1, Math.min(pageSize, 1000)) });
    return { page: result.page.map(rowView), isDone: result.isDone, continueCursor: result.continueCursor };
  },
});

/** The rows of one object. */
export const ofObject = internalQuery({
  args: objectKey,
  returns: v.array(refRow),
  handler: async (ctx, object) => (await rowsOf(ctx, object)).map(rowView),
});


/**
 * Make the committed rows of each owner exactly what its record's manifest says, reading the
 * record in the same transaction (so a concurrent write cannot be overwritten with stale refs).
 * An owner whose record is gone loses all its rows. Answers the objects left unreferenced.
 */
export const reconcile = internalMutation({
  args: { owners: v.array(v.string()), now: v.number(), catalog },
  returns: v.object({ changed: v.number(), unreferenced: v.array(objectKey) }),
  handler: async (ctx, { owners, now, catalog: cat }) => {
    const touched = new Map<string, ObjectKey>();
    let changed = 0;
    for (const owner of owners) {
      const located = ownerRecord(cat, owner);
      if (located === null) continue;
      const found = await findRecord(ctx, located.kind, located.id);
      const refs = found
        ? (recordRefs(cat, located.kind, found.doc).owners.find((o) => o.owner === owner)?.refs ?? [])
        : [];
      const wanted = new Map(refs.map((ref) => [objectId(ref), ref]));
      const rows = await ctx.db.query("offload_refs").withIndex("by_owner", (q) => q.eq("owner", owner)).collect();
      for (const row of rows) {
        if (row.state !== "committed") continue;
        if (wanted.has(objectId(row))) wanted.delete(objectId(row));
        else {
          touched.set(objectId(row), { bucket: row.bucket, key: row.key });
          await ctx.db.delete(row._id);
          changed += 1;
        }
      }
      for (const ref of wanted.values()) {
        const parts = ref.key.split("/");
        const tenant = parts.length >= 2 ? parts[parts.length - 2] : "";
        await ctx.db.insert("offload_refs", { ...ref, tenant, owner, state: "committed", createdAt: now });
        changed += 1;
      }
    }
    return { changed, unreferenced: await unreferenced(ctx, touched) };
  },
});
