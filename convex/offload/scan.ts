// Read-only passes over the stored records, for the garbage collector, `verify`, `stats` and
// `migrate`: one page of a table at a time, answering per record its size and the objects its
// manifests reference, never the records themselves.
import { v } from "convex/values";
import { getDocumentSize } from "convex/values";
import { internalQuery } from "../_generated/server";
import { recordRefs, SCANNED_TABLES, type ScannedTable } from "./manifests";

const tableName = v.union(
  v.literal("mastra_messages"),
  v.literal("mastra_threads"),
  v.literal("mastra_resources"),
  v.literal("mastra_workflow_snapshots"),
);

const refShape = v.object({ bucket: v.string(), key: v.string(), size: v.number(), sha256: v.string() });

/** One page of a record table: each record's owner id, document size, inline-payload hint and refs. */
export const records = internalQuery({
  args: { table: tableName, cursor: v.union(v.string(), v.null()), pageSize: v.number() },
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
  handler: async (ctx, { table, cursor, pageSize }) => {
    const result = await ctx.db
      .query(table as ScannedTable)
      .paginate({ cursor, numItems: Math.max(1, Math.min(pageSize, 500)), maximumBytesRead: 8 * 1024 * 1024 });
    return {
      page: result.page.map((doc) => {
        const { owners, inline } = recordRefs(table as ScannedTable, doc as unknown as Record<string, unknown>);
        return { id: String(doc.id ?? doc._id), size: getDocumentSize(doc), inline, owners };
      }),
      isDone: result.isDone,
      continueCursor: result.continueCursor,
    };
  },
});

export { SCANNED_TABLES };
