// The @mastra/convex cache handler, unchanged: ConvexServerCache (TypeScript and Python) calls
// `mastra/cache:handle`.
import { mastraCache } from "@mastra/convex/server";

export const handle = mastraCache;
