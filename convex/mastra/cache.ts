// The @mastra/convex cache handler, unchanged: TypeScript `ConvexServerCache` and the Python
// `ConvexServerCache` both call `mastra/cache:handle` (tables `mastra_cache`, `mastra_cache_list_items`).
import { mastraCache } from "@mastra/convex/server";

export const handle = mastraCache;
