// Drives the real TypeScript stores of @mastra/convex for the interop tests.
// Reads one JSON request per line on stdin: {"id", "target": "memory"|"workflows"|"scores"|"vector"|
// "cache"|"nativeVector", "method", "args", "config"?}; writes one JSON answer per line:
// {"id", "ok": true, "result"} or {"id", "ok": false, "error"}. `config` is the constructor config of a
// `cache` (ConvexServerCache: keyPrefix, ttlMs) or `nativeVector` (ConvexNativeVector: indexes, ...).
// Date fields in arguments arrive as ISO strings and are turned into Date objects, as Mastra expects.
import { createInterface } from "node:readline";
import { ConvexNativeVector, ConvexServerCache, ConvexStore, ConvexVector } from "@mastra/convex";

const url = process.env.CONVEX_URL;
const adminAuthToken = process.env.CONVEX_ADMIN_KEY;
if (!url || !adminAuthToken) {
  process.stderr.write("CONVEX_URL and CONVEX_ADMIN_KEY are required\n");
  process.exit(2);
}

const store = new ConvexStore({ id: "interop", deploymentUrl: url, adminAuthToken });
const vector = new ConvexVector({ id: "interop-vector", deploymentUrl: url, adminAuthToken });
const DATE_KEYS = new Set([
  "createdAt",
  "updatedAt",
  "start",
  "end",
  "fromDate",
  "toDate",
  "from",
  "to",
  "lastObservedAt",
  "lastBufferedAtTime",
  "startedAt",
  "suspendedAt",
  "completedAt",
]);
// One ConvexServerCache / ConvexNativeVector per distinct config.
const configured = new Map();
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function revive(value, key) {
  if (typeof value === "string" && DATE_KEYS.has(key) && ISO.test(value)) return new Date(value);
  if (Array.isArray(value)) return value.map((item) => revive(item, ""));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v, k)]));
  }
  return value;
}

function configuredTarget(name, config) {
  const key = `${name}:${JSON.stringify(config ?? {})}`;
  if (!configured.has(key)) {
    const base = { deploymentUrl: url, adminAuthToken };
    configured.set(
      key,
      name === "cache"
        ? new ConvexServerCache({ ...base, ...config })
        : new ConvexNativeVector({ id: "interop-native-vector", indexes: {}, ...base, ...config }),
    );
  }
  return configured.get(key);
}

async function target(name, config) {
  if (name === "vector") return vector;
  if (name === "cache" || name === "nativeVector") return configuredTarget(name, config);
  const domain = await store.getStore(name);
  if (!domain) throw new Error(`no ${name} domain`);
  return domain;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
    const object = await target(request.target, request.config);
    const method = object[request.method];
    if (typeof method !== "function") throw new Error(`${request.target}.${request.method} is not a method`);
    const args = (request.args ?? []).map((arg) => revive(arg, ""));
    const result = await method.apply(object, args);
    process.stdout.write(JSON.stringify({ id: request.id, ok: true, result: result ?? null }) + "\n");
  } catch (error) {
    process.stdout.write(
      JSON.stringify({ id: request?.id ?? null, ok: false, error: String(error?.message ?? error) }) + "\n",
    );
  }
}
