// The @mastra/convex native vector handlers, unchanged, under the names ConvexNativeVector calls by
// default: `mastra/nativeVector:query` (vector search, an action), `:read` (a query), `:write` (a mutation).
import {
  mastraNativeVectorAction,
  mastraNativeVectorMutation,
  mastraNativeVectorQuery,
} from "@mastra/convex/server";

export const query = mastraNativeVectorAction;
export const read = mastraNativeVectorQuery;
export const write = mastraNativeVectorMutation;
