/* Written to match what `npx convex codegen` generates: references to this folder's functions. */
import type { ApiFromModules, FilterApi, FunctionReference } from "convex/server";
import { anyApi } from "convex/server";
import type * as mastra_cache from "../mastra/cache";
import type * as mastra_nativeVector from "../mastra/nativeVector";
import type * as mastra_storage from "../mastra/storage";
import type * as offload_catalog from "../offload/catalog";
import type * as offload_files from "../offload/files";
import type * as offload_records from "../offload/records";
import type * as offload_refs from "../offload/refs";
import type * as offload_scan from "../offload/scan";
import type * as offload_tables from "../offload/tables";

declare const fullApi: ApiFromModules<{
  "mastra/cache": typeof mastra_cache;
  "mastra/nativeVector": typeof mastra_nativeVector;
  "mastra/storage": typeof mastra_storage;
  "offload/catalog": typeof offload_catalog;
  "offload/files": typeof offload_files;
  "offload/records": typeof offload_records;
  "offload/refs": typeof offload_refs;
  "offload/scan": typeof offload_scan;
  "offload/tables": typeof offload_tables;
}>;

export const api: FilterApi<typeof fullApi, FunctionReference<any, "public">> = anyApi as any;
export const internal: FilterApi<typeof fullApi, FunctionReference<any, "internal">> = anyApi as any;
