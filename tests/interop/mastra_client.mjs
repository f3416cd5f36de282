// Drives the real TypeScript stores of @mastra/convex for the interop tests.
// Reads one JSON request per line on stdin: {"id", "target": a ConvexStore domain name or "vector",
// "method", "args"}; writes one JSON answer per line: {"id", "ok": true, "result"} or {"id", "ok": false, "error"}.
// Date fields in arguments arrive as ISO strings and are turned into Date objects, as Mastra expects
// (epoch-millisecond numbers, as schedules keep their times, stay numbers).
import { createInterface } from "node:readline";
import { ConvexStore, ConvexVector } from "@mastra/convex";

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
  "startedAt",
  "suspendedAt",
  "completedAt",
]);
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function revive(value, key) {
  if (typeof value === "string" && DATE_KEYS.has(key) && ISO.test(value)) return new Date(value);
  if (Array.isArray(value)) return value.map((item) => revive(item, ""));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v, k)]));
  }
  return value;
}

async function target(name) {
  if (name === "vector") return vector;
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
    const object = await target(request.target);
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
