// Read-only passes over the stored records, for the garbage collector, `verify`, `stats` and
// `migrate`: one page of a kind's records at a time, answering per record its size and the objects
// its manifests reference, never the records themselves. The kind comes with the call (catalog.ts).
import { v } from "convex/values";
import { getDocumentSize } from "convex/values";
import { internalQuery } from "../_generated/server";
import { catalog, kindNamed, pageOf, recordRefs } from "./catalog";

const refShape = v.object({ bucket: v.string(), key: v.string(), size: v.number(), sha256: v.string() });

/** One page of a kind's records: each record's id, document size, inline-payload hint and refs. */
export const records = internalQuery({
  args: { kind: v.string(), catalog, cursor: v.union(v.string(), v.null()), pageSize: v.number() },
  returns: v.object({
    page: v.array(
      v.object({
        id: v.string(),
        size: v.number(),
        inline: v.boolean(),
        owners: v.array(v.object({ owner: v.string(), refs: v.array(refShape) })),
      }),
    ),
    isDone: v.boolean(),
    continueCursor: v.string(),
  }),
  handler: async (ctx, args) => {
    const kind = kindNamed(args.catalog, args.kind);
    const result = await pageOf(ctx, kind, args.cursor, Math.max(1, Math.min(args.pageSize, 500)));
    return {
      page: result.page.map((doc) => {
        const found = recordRefs(args.catalog, kind, doc as unknown as Record<string, unknown>);
        return { ...found, size: getDocumentSize(doc) };
      }),
      isDone: result.isDone,
      continueCursor: result.continueCursor,
    };
  },
});
