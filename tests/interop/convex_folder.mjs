// Compares a Convex functions folder (argv[2], default: the project's convex/) with the INSTALLED
// @mastra/convex, and prints one JSON report for tests/test_convex_folder.py. Everything expected is
// read from the package at run time, never listed here:
// - tables: every TableDefinition exported by `@mastra/convex/schema` or `/server`, and the names the
//   folder's schema declares it under (by identity: the folder must import the package's own object);
// - routes: the Convex tables (and indexes) the package's storage and cache handlers reach for each
//   logical table name, found by running them on convex-test (see below), and whether each probe
//   then runs clean on the folder's tables;
// - functions: every Convex function exported by `/server`, its kind, and where the folder mounts it;
// - clientPaths: the function paths the package's TS clients call by default, read from instances.
import { readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { convexTest } from "convex-test";
import { defineSchema, makeFunctionReference } from "convex/server";
import { register } from "tsx/esm/api";
import * as convexPackage from "@mastra/convex";
import * as schemaExports from "@mastra/convex/schema";
import * as serverExports from "@mastra/convex/server";

const here = dirname(fileURLToPath(import.meta.url));
const folder = resolve(process.argv[2] ?? join(here, "..", "..", "convex"));

const isTable = (value) =>
  value !== null && typeof value === "object" && typeof value.export === "function" && Array.isArray(value.indexes);
const kindOf = (value) =>
  value?.isQuery ? "query" : value?.isMutation ? "mutation" : value?.isAction ? "action" : null;

function moduleFiles(root) {
  const found = [];
  for (const name of readdirSync(root).sort()) {
    if (name.startsWith(".") || name === "node_modules" || name === "_generated") continue;
    const path = join(root, name);
    if (statSync(path).isDirectory()) found.push(...moduleFiles(path));
    else if (/\.(ts|js|mjs)$/.test(name) && !name.endsWith(".d.ts")) found.push(path);
  }
  return found;
}

register();
const modules = {};
for (const file of moduleFiles(folder)) {
  const module = relative(folder, file).split("\\").join("/").replace(/\.(ts|js|mjs)$/, "");
  modules[module] = await import(pathToFileURL(file).href);
}
const schema = modules.schema?.default;
if (!schema?.tables) throw new Error(`no schema.ts with a default defineSchema(...) in ${folder}`);

// Tables: the package's, by export name, and where the folder's schema declares each.
const packageTables = new Map();
for (const exports of [schemaExports, serverExports]) {
  for (const [name, value] of Object.entries(exports)) if (isTable(value)) packageTables.set(name, value);
}
const tables = [...packageTables].map(([exportName, table]) => ({
  export: exportName,
  declaredAs: Object.entries(schema.tables)
    .filter(([, declared]) => declared === table)
    .map(([name]) => name),
  indexes: table.indexes.map((index) => index.indexDescriptor),
}));
const declared = Object.fromEntries(
  Object.entries(schema.tables).map(([name, table]) => [
    name,
    {
      packageExport: [...packageTables].find(([, t]) => t === table)?.[0] ?? null,
      indexes: table.indexes.map((index) => index.indexDescriptor),
    },
  ]),
);

// Routes: probe the real handlers. Logical names are the package's TABLE_* constants, plus a vector
// index table (`mastra_vector_<index>`) and a name the store does not know (the generic documents);
// the cache handler is probed with a list push and read. Each probe runs on convex-test, first with
// an empty schema; every "not declared" error names a table the handler reads, which is then taken
// from the folder's schema (when it has it) and the probe run again, until it runs clean.
const logicalNames = Object.entries(schemaExports)
  .filter(([name, value]) => name.startsWith("TABLE_") && typeof value === "string")
  .map(([, value]) => value);
const load = (tableName) => ({ op: "load", tableName, keys: { id: "probe" } });
const probes = [
  ...[...new Set(logicalNames), "mastra_vector_probe", "probe_unknown_table"].map((tableName) => ({
    fn: "storage",
    requests: [load(tableName)],
  })),
  {
    fn: "cache",
    requests: [
      { op: "listPush", key: "probe", keyPrefix: "probe", value: "v", expiresAt: null },
      { op: "listFromTo", key: "probe", from: 0, to: -1 },
    ],
  },
];
const UNDECLARED = /Cannot use index "([^"]+)" for table "([^"]+)" because it is not declared in the schema/;
async function run(tables, probe) {
  const t = convexTest({
    schema: defineSchema(tables),
    modules: {
      "/convex/_generated/server.js": async () => ({}),
      "/convex/probe.js": async () => ({ storage: serverExports.mastraStorage, cache: serverExports.mastraCache }),
    },
  });
  for (const request of probe.requests) {
    try {
      const answer = await t.mutation(makeFunctionReference(`probe:${probe.fn}`), request);
      if (answer && answer.ok === false) return String(answer.error);
    } catch (error) {
      return String(error?.message ?? error);
    }
  }
  return null;
}
const routes = [];
for (const probe of probes) {
  const reached = [];
  const tables = {};
  let error = await run(tables, probe);
  for (let match = error && UNDECLARED.exec(error); match; match = error && UNDECLARED.exec(error)) {
    const [, index, table] = match;
    reached.push({ table, index });
    if (!(table in schema.tables) || table in tables) break;
    tables[table] = schema.tables[table];
    error = await run(tables, probe);
  }
  routes.push({ handler: probe.fn, requests: probe.requests, reached, error });
}

// Functions: every Convex function `/server` exports, and the folder's `module:export` paths of it.
const mounts = [];
for (const [module, exports] of Object.entries(modules)) {
  for (const [name, value] of Object.entries(exports)) if (kindOf(value)) mounts.push({ path: `${module}:${name}`, value });
}
const functions = Object.entries(serverExports)
  .filter(([, value]) => kindOf(value))
  .map(([exportName, value]) => ({
    export: exportName,
    kind: kindOf(value),
    mountedAt: mounts.filter((mount) => mount.value === value).map((mount) => mount.path),
  }));
const exportAt = Object.fromEntries(
  mounts.map((mount) => [
    mount.path,
    {
      kind: kindOf(mount.value),
      packageExport: Object.entries(serverExports).find(([, v]) => v === mount.value)?.[0] ?? null,
    },
  ]),
);

// Client paths: what the package's clients call when not told otherwise.
const fake = { deploymentUrl: "https://probe.convex.cloud", adminAuthToken: "probe" };
const nativeVector = new convexPackage.ConvexNativeVector({ id: "probe", ...fake, indexes: {} });
const cacheClient = new convexPackage.ConvexCacheClient(fake);
const clientPaths = {
  storageFunction: { path: nativeVector.client.storageFunction, kind: "mutation" },
  cacheFunction: { path: cacheClient.cacheFunction, kind: "mutation" },
  nativeVectorAction: { path: nativeVector.nativeVectorAction, kind: "action" },
  nativeVectorQuery: { path: nativeVector.nativeVectorQuery, kind: "query" },
  nativeVectorMutation: { path: nativeVector.nativeVectorMutation, kind: "mutation" },
};

process.stdout.write(
  JSON.stringify({ folder, tables, declared, routes, functions, exportAt, clientPaths }, null, 1) + "\n",
);
