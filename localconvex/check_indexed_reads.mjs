#!/usr/bin/env node
// Checks lib/indexed_reads.mjs against convex-test itself: the same seeded random inserts, patches,
// deletes, rolled-back writes and index/table queries (read-your-writes included) run on a plain
// convex-test and on an indexed one, and every answer must match.
//
//   node localconvex/check_indexed_reads.mjs [steps]    → prints {"steps":N,"mismatches":0}, exits 1 on any
import { convexTest } from "convex-test";
import { register } from "tsx/esm/api";
import { indexReads } from "./lib/indexed_reads.mjs";

register();
const schema = (await import(new URL("../convex/schema.ts", import.meta.url).href)).default;
const modules = { "/convex/_generated/server.js": async () => ({}) };
const plain = convexTest({ schema, modules });
const indexed = convexTest({ schema, modules });
if (!(await indexReads(indexed))) throw new Error("indexReads refused this convex-test");

const steps = Number(process.argv[2] ?? 3000);
let seed = 12345;
const rnd = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
const pick = (xs) => xs[rnd(xs.length)];
const buckets = ["b1", "b2", "b3"];
const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
const owners = ["o1", "o2", "o3", "o4"];
const row = (extra = {}) => ({
  bucket: pick(buckets),
  key: pick(keys),
  tenant: "t",
  owner: pick(owners),
  state: pick(["committed", "pending", "deleting"]),
  size: rnd(100),
  sha256: "x",
  createdAt: rnd(1000),
  ...extra,
});

async function step(ctx, op) {
  if (op < 3) {
    const extra = rnd(2) ? { token: pick(["tok1", "tok2"]), expiresAt: rnd(1000) } : {};
    return ["insert", await ctx.db.insert("offload_refs", row(extra))];
  }
  if (op < 4) {
    const all = await ctx.db.query("offload_refs").collect();
    if (all.length === 0) return ["empty"];
    const doc = all[rnd(all.length)];
    if (rnd(2)) {
      await ctx.db.delete(doc._id);
      return ["delete", doc._id];
    }
    await ctx.db.patch(doc._id, { key: pick(keys), owner: pick(owners), state: pick(["committed", "pending"]) });
    return ["patch", doc._id];
  }
  if (op < 5) {
    await ctx.db.insert("offload_refs", row());
    const b = pick(buckets);
    const k = pick(keys);
    const docs = await ctx.db.query("offload_refs").withIndex("by_object", (q) => q.eq("bucket", b).eq("key", k)).collect();
    return ["read own write", docs.map((d) => d._id)];
  }
  if (op === 9 && rnd(3) === 0) {
    await ctx.db.insert("offload_refs", row());
    throw new Error("rolled back");
  }
  const b = pick(buckets);
  const k = pick(keys);
  const o = pick(owners);
  const refs = () => ctx.db.query("offload_refs");
  const queries = [
    () => refs().withIndex("by_object", (q) => q.eq("bucket", b).eq("key", k)).collect(),
    () => refs().withIndex("by_object", (q) => q.eq("bucket", b)).order("desc").take(5),
    () => refs().withIndex("by_object", (q) => q.eq("bucket", b).gt("key", k)).collect(),
    () => refs().withIndex("by_owner", (q) => q.eq("owner", o)).collect(),
    () => refs().withIndex("by_owner", (q) => q.gte("owner", "o2").lt("owner", "o4")).collect(),
    () => refs().withIndex("by_token", (q) => q.eq("token", pick(["tok1", "tok2"]))).collect(),
    () => refs().withIndex("by_state", (q) => q.eq("state", "pending").lt("expiresAt", 500)).collect(),
    () => refs().withIndex("by_object", (q) => q.eq("bucket", b).eq("key", k)).unique().then((d) => (d ? [d] : [])),
    () => refs().collect(),
  ];
  const which = rnd(queries.length);
  const docs = await queries[which]();
  return [`query ${which}`, docs.map((d) => `${d._id}:${d.key}:${d.owner}:${d.state}`)];
}

let mismatches = 0;
for (let i = 0; i < steps; i++) {
  const op = rnd(10);
  const start = seed;
  const answers = [];
  for (const t of [plain, indexed]) {
    seed = start; // the same random choices for both databases
    answers.push(JSON.stringify(await t.run((ctx) => step(ctx, op)).catch((error) => ["error", String(error?.message)])));
  }
  if (answers[0] !== answers[1]) {
    mismatches += 1;
    if (mismatches <= 3) process.stderr.write(`step ${i}: convex-test ${answers[0]}\n        indexed ${answers[1]}\n`);
  }
}
process.stdout.write(JSON.stringify({ steps, mismatches }) + "\n");
process.exit(mismatches === 0 ? 0 : 1);
