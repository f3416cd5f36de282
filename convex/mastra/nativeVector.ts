// The @mastra/convex native vector handlers, unchanged: TypeScript `ConvexNativeVector` and the
// Python `ConvexNativeVector` call `mastra/nativeVector:query` (an action running `ctx.vectorSearch`),
// `mastra/nativeVector:read` (a query) and `mastra/nativeVector:write` (a mutation). Each call names
// the vector table and index to use; declare those in schema.ts (see README "Native vector search").
import {
  mastraNativeVectorAction,
  mastraNativeVectorMutation,
  mastraNativeVectorQuery,
} from "@mastra/convex/server";

export const query = mastraNativeVectorAction;
export const read = mastraNativeVectorQuery;
export const write = mastraNativeVectorMutation;
