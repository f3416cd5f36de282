// Record writes with their references, in one transaction.
//
// `write` runs @mastra/convex storage requests (the very handler behind `mastra/storage:handle`,
// so rows are identical to what the TypeScript store writes) and, in the same transaction, makes
// `offload_refs` say exactly which objects each written record references. Before writing, it
// checks that every referenced object is alive (committed elsewhere, or leased by this writer)
// and not being deleted; otherwise nothing is written and the missing objects are named.
import { ConvexError, v } from "convex/values";
import { mastraStorage } from "@mastra/convex/server";
import { internalMutation } from "../_generated/server";
import { catalog, findRecord, kindOfTable } from "./catalog";
import { beingDeleted, keepsAlive, objectId, objectKey, objectRef, rowsOf, unreferenced } from "./refs";

type StorageHandler = (ctx: unknown, request: unknown) => Promise<{ ok?: boolean; result?: unknown; error?: string }>;

// A registered Convex function keeps its handler as `_handler` (convex/server registration).
const runStorage = (mastraStorage as unknown as { _handler?: StorageHandler })._handler;
if (typeof runStorage !== "function") {
  throw new Error("offload/records: this @mastra/convex version does not expose its storage handler");
}

export const write = internalMutation({
  args: {
    requests: v.array(v.any()),
    owners: v.array(v.object({ owner: v.string(), objects: v.array(objectRef) })),
    release: v.optional(v.array(v.string())),
    token: v.optional(v.string()),
    expect: v.optional(
      v.array(v.object({ table: v.string(), id: v.string(), field: v.string(), value: v.any() })),
    ),
    catalog: v.optional(catalog),
    now: v.number(),
  },
  returns: v.object({
    ok: v.boolean(),
    conflicts: v.array(v.string()),
    missing: v.array(objectKey),
    results: v.array(v.any()),
    released: v.array(objectKey),
  }),
  handler: async (ctx, { requests, owners, release, token, expect, catalog: cat, now }) => {
    // Preconditions (the migration's compare-and-swap): a stored field must still hold a value.
    const conflicts: string[] = [];
    for (const { table, id, field, value } of expect ?? []) {
      const kind = cat ? kindOfTable(cat, table) : undefined;
      if (kind === undefined) throw new Error(`cannot expect on table ${table}: no record kind describes it`);
      const found = await findRecord(ctx, kind, id);
      if (found === null || found.record[field] !== value) conflicts.push(`${table}:${id}`);
    }
    if (conflicts.length > 0) return { ok: false, conflicts, missing: [], results: [], released: [] };

    const missing = [];
    const checked = new Set<string>();
    for (const { objects } of owners) {
      for (const object of objects) {
        if (checked.has(objectId(object))) continue;
        checked.add(objectId(object));
        const rows = await rowsOf(ctx, object);
        const alive = rows.some(
          (row) => row.state === "committed" || (row.state === "pending" && token !== undefined && row.token === token && keepsAlive(row, now)),
        );
        if (!alive || beingDeleted(rows, now)) missing.push({ bucket: object.bucket, key: object.key });
      }
    }
    if (missing.length > 0) return { ok: false, conflicts: [], missing, results: [], released: [] };

    const results: unknown[] = [];
    for (const [index, request] of requests.entries()) {
      const answer = await runStorage(ctx, request);
      if (!answer?.ok) {
        throw new ConvexError({ kind: "storage", index, error: answer?.error ?? "unknown storage error" });
      }
      results.push(answer.result ?? null);
    }

    const touched = new Map<string, { bucket: string; key: string }>();
    // Release first: a record rewritten whole (a workflow snapshot) drops its old step owners too.
    for (const prefix of release ?? []) {
      const rows = await ctx.db
        .query("offload_refs")
        .withIndex("by_owner", (q) => q.gte("owner", prefix).lt("owner", prefix + "0"))
        .collect();
      for (const row of rows) {
        if (row.owner !== prefix && !row.owner.startsWith(prefix + "/")) continue;
        touched.set(objectId(row), { bucket: row.bucket, key: row.key });
        await ctx.db.delete(row._id);
      }
    }
    for (const { owner, objects } of owners) {
      const wanted = new Map(objects.map((object) => [objectId(object), object]));
      const current = await ctx.db.query("offload_refs").withIndex("by_owner", (q) => q.eq("owner", owner)).collect();
      for (const row of current) {
        if (row.state !== "committed") continue;
        if (wanted.has(objectId(row))) wanted.delete(objectId(row));
        else {
          touched.set(objectId(row), { bucket: row.bucket, key: row.key });
          await ctx.db.delete(row._id);
        }
      }
      for (const object of wanted.values()) {
        await ctx.db.insert("offload_refs", { ...object, owner, state: "committed", createdAt: now });
      }
    }
    if (token !== undefined) {
      const leases = await ctx.db.query("offload_refs").withIndex("by_token", (q) => q.eq("token", token)).collect();
      for (const row of leases) {
        if (row.state !== "pending") continue;
        touched.set(objectId(row), { bucket: row.bucket, key: row.key });
        await ctx.db.delete(row._id);
      }
    }
    return { ok: true, conflicts: [], missing: [], results, released: await unreferenced(ctx, touched) };
  },
});
