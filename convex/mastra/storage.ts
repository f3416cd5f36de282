// The @mastra/convex storage handler, unchanged: TypeScript Mastra apps and the Python
// ConvexStore both call `mastra/storage:handle`.
import { mastraStorage } from "@mastra/convex/server";

export const handle = mastraStorage;
