// Record kinds, as the Python library describes them (its `offload/kinds.json`) and sends them
// with every scan, reconciliation and guarded write: which Convex table holds a kind's records and
// how, which fields hold JSON worth scanning, where the manifest lives, how owner ids are spelled.
// Nothing here knows a table by name, so Python and these functions cannot drift apart.
import { v, type Infer } from "convex/values";
import type { QueryCtx } from "../_generated/server";

export const catalog = v.object({
  kinds: v.array(
    v.object({
      name: v.string(),
      table: v.string(),
      storage: v.object({ table: v.string(), layout: v.union(v.literal("typed"), v.literal("documents")) }),
      id: v.string(),
      tenant: v.string(),
      fields: v.record(v.string(), v.union(v.literal("json"), v.literal("value"))),
      // Absent: each scanned field is a part with its own manifest (see `parts`).
      manifest: v.optional(v.array(v.string())),
      parts: v.optional(v.object({ name: v.string(), under: v.array(v.string()) })),
      merge: v.union(v.literal("shallow"), v.literal("replace")),
      guard: v.union(v.string(), v.array(v.string())),
    }),
  ),
  bytesFields: v.array(v.string()),
  manifestKey: v.string(),
});
export type Catalog = Infer<typeof catalog>;
export type Kind = Catalog["kinds"][number];
export type Ref = { bucket: string; key: string; size: number; sha256: string };
export type OwnerRefs = { owner: string; refs: Ref[] };
type Json = Record<string, unknown>;

export function kindNamed(cat: Catalog, name: string): Kind {
  const kind = cat.kinds.find((k) => k.name === name);
  if (kind === undefined) throw new Error(`unknown record kind ${name}`);
  return kind;
}

/** The kind of a Mastra table name (what owner ids and requests use). */
export function kindOfTable(cat: Catalog, table: string): Kind | undefined {
  return cat.kinds.find((k) => k.table === table);
}

/** A record's document and the record inside it (the same object, except in `mastra_documents`). */
export async function findRecord(ctx: QueryCtx, kind: Kind, id: string): Promise<{ doc: Json; record: Json } | null> {
  if (kind.storage.layout === "documents") {
    const doc = await ctx.db
      .query("mastra_documents")
      .withIndex("by_table_primary", (q) => q.eq("table", kind.table).eq("primaryKey", id))
      .unique();
    return doc ? { doc: doc as unknown as Json, record: (doc.record ?? {}) as Json } : null;
  }
  const doc = await ctx.db
    .query(kind.storage.table as "mastra_messages")
    .withIndex("by_record_id", (q) => q.eq("id", id))
    .unique();
  return doc ? { doc: doc as unknown as Json, record: doc as unknown as Json } : null;
}

/** One page of a kind's documents. */
export async function pageOf(ctx: QueryCtx, kind: Kind, cursor: string | null, numItems: number) {
  const options = { cursor, numItems, maximumBytesRead: 8 * 1024 * 1024 };
  if (kind.storage.layout === "documents") {
    return await ctx.db
      .query("mastra_documents")
      .withIndex("by_table", (q) => q.eq("table", kind.table))
      .paginate(options);
  }
  return await ctx.db.query(kind.storage.table as "mastra_messages").paginate(options);
}

/** The record inside a document of the kind, and its id. */
export function recordOf(kind: Kind, doc: Json): { id: string; record: Json } {
  if (kind.storage.layout === "documents") return { id: String(doc.primaryKey), record: (doc.record ?? {}) as Json };
  return { id: String(doc[kind.id] ?? doc._id), record: doc };
}

function parse(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function at(tree: unknown, path: readonly string[]): unknown {
  let node = tree;
  for (const token of path) {
    if (!node || typeof node !== "object" || Array.isArray(node)) return undefined;
    node = (node as Json)[token];
  }
  return node;
}

function refsOf(cat: Catalog, holder: unknown): Ref[] {
  const manifest = at(holder, [cat.manifestKey]);
  const refs = manifest && typeof manifest === "object" ? (manifest as { refs?: unknown }).refs : undefined;
  if (!Array.isArray(refs)) return [];
  const out: Ref[] = [];
  for (const ref of refs) {
    if (ref && typeof ref.bucket === "string" && typeof ref.key === "string") {
      out.push({ bucket: ref.bucket, key: ref.key, size: Number(ref.size) || 0, sha256: String(ref.sha256 ?? "") });
    }
  }
  return out;
}

function inlineHint(cat: Catalog): RegExp {
  const names = cat.bytesFields.map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  return new RegExp(`;base64,[A-Za-z0-9+/]{256}|"(?:${names})":"[A-Za-z0-9+/]{1024}`);
}

/** The texts of a record's scanned fields, and its tree (parsed only when it holds a manifest). */
function scanned(cat: Catalog, kind: Kind, record: Json): { texts: string[]; tree: unknown } {
  const texts: string[] = [];
  const values: Json = {};
  for (const [field, encoding] of Object.entries(kind.fields)) {
    const value = record[field];
    if (value === undefined || value === null) continue;
    const text = typeof value === "string" ? value : JSON.stringify(value);
    texts.push(text);
    values[field] = encoding === "json" ? (text.includes(cat.manifestKey) ? parse(value) : undefined) : value;
  }
  const fields = Object.keys(kind.fields);
  return { texts, tree: fields.length === 1 ? values[fields[0]] : values };
}

/** The owners of a stored record and the objects each references; `inline` hints at base64 left inline. */
export function recordRefs(cat: Catalog, kind: Kind, doc: Json): { id: string; owners: OwnerRefs[]; inline: boolean } {
  const { id, record } = recordOf(kind, doc);
  const owner = `${kind.table}:${id}`;
  const { texts, tree } = scanned(cat, kind, record);
  const owners: OwnerRefs[] = [{ owner, refs: kind.manifest ? refsOf(cat, at(tree, kind.manifest)) : [] }];
  if (kind.parts) {
    const under = at(tree, kind.parts.under);
    if (under && typeof under === "object" && !Array.isArray(under)) {
      for (const [key, part] of Object.entries(under as Json)) {
        const refs = refsOf(cat, part);
        if (refs.length > 0) owners.push({ owner: `${owner}/${kind.parts.name}/${key}`, refs });
      }
    }
  }
  const hint = inlineHint(cat);
  return { id, owners, inline: texts.some((text) => hint.test(text)) };
}

/** The kind, record id and part behind an owner id; null for owners of no known kind. */
export function ownerRecord(cat: Catalog, owner: string): { kind: Kind; id: string; part?: string } | null {
  const colon = owner.indexOf(":");
  if (colon < 0) return null;
  const kind = kindOfTable(cat, owner.slice(0, colon));
  if (kind === undefined) return null;
  const rest = owner.slice(colon + 1);
  if (kind.parts) {
    const marker = `/${kind.parts.name}/`;
    const partAt = rest.indexOf(marker);
    if (partAt >= 0) return { kind, id: rest.slice(0, partAt), part: rest.slice(partAt + marker.length) };
  }
  return { kind, id: rest };
}
