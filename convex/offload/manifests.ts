// Reading convex-offload manifests out of stored records (the format is in the Python library's
// `offload/manifest.py` and in the README). Shared by the scan query and reconciliation.
export const SCANNED_TABLES = ["mastra_messages", "mastra_threads", "mastra_resources", "mastra_workflow_snapshots"] as const;
export type ScannedTable = (typeof SCANNED_TABLES)[number];

export type Ref = { bucket: string; key: string; size: number; sha256: string };
export type OwnerRefs = { owner: string; refs: Ref[] };

const MANIFEST_KEY = "convex_offload";
// The logical table names owners use (as the @mastra/convex client names them).
const OWNER_TABLE: Record<ScannedTable, string> = {
  mastra_messages: "mastra_messages",
  mastra_threads: "mastra_threads",
  mastra_resources: "mastra_resources",
  mastra_workflow_snapshots: "mastra_workflow_snapshot",
};
const INLINE_HINT = /;base64,[A-Za-z0-9+/]{256}|"(?:data|image|base64|bytes)":"[A-Za-z0-9+/]{1024}/;

function parse(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function refsOf(holder: unknown): Ref[] {
  if (!holder || typeof holder !== "object") return [];
  const manifest = (holder as Record<string, unknown>)[MANIFEST_KEY];
  if (!manifest || typeof manifest !== "object") return [];
  const refs = (manifest as { refs?: unknown }).refs;
  if (!Array.isArray(refs)) return [];
  const out: Ref[] = [];
  for (const ref of refs) {
    if (ref && typeof ref.bucket === "string" && typeof ref.key === "string") {
      out.push({ bucket: ref.bucket, key: ref.key, size: Number(ref.size) || 0, sha256: String(ref.sha256 ?? "") });
    }
  }
  return out;
}

/** The owners of a stored record and the objects each references; `inline` hints at base64 left inline. */
export function recordRefs(table: ScannedTable, doc: Record<string, unknown>): { owners: OwnerRefs[]; inline: boolean } {
  const owner = `${OWNER_TABLE[table]}:${String(doc.id ?? "")}`;
  switch (table) {
    case "mastra_messages": {
      const text = typeof doc.content === "string" ? doc.content : "";
      const content = text.includes(MANIFEST_KEY) ? parse(text) : undefined;
      const metadata = content && typeof content === "object" ? (content as Record<string, unknown>).metadata : undefined;
      return { owners: [{ owner, refs: refsOf(metadata) }], inline: INLINE_HINT.test(text) };
    }
    case "mastra_threads":
      return { owners: [{ owner, refs: refsOf(doc.metadata) }], inline: INLINE_HINT.test(JSON.stringify(doc.metadata ?? null)) };
    case "mastra_resources":
      return {
        owners: [{ owner, refs: refsOf(doc.metadata) }],
        inline: INLINE_HINT.test(String(doc.workingMemory ?? "")) || INLINE_HINT.test(JSON.stringify(doc.metadata ?? null)),
      };
    case "mastra_workflow_snapshots": {
      const text = typeof doc.snapshot === "string" ? doc.snapshot : JSON.stringify(doc.snapshot ?? null);
      const snapshot = text.includes(MANIFEST_KEY) ? parse(text) : undefined;
      const owners: OwnerRefs[] = [{ owner, refs: refsOf(snapshot) }];
      const context = snapshot && typeof snapshot === "object" ? (snapshot as Record<string, unknown>).context : undefined;
      if (context && typeof context === "object") {
        for (const [step, result] of Object.entries(context as Record<string, unknown>)) {
          const refs = refsOf(result);
          if (refs.length > 0) owners.push({ owner: `${owner}/step/${step}`, refs });
        }
      }
      return { owners, inline: INLINE_HINT.test(text) };
    }
  }
}

/** The Convex table and record id behind an owner string; null for owners this file does not know. */
export function ownerRecord(owner: string): { table: ScannedTable; id: string; step?: string } | null {
  const colon = owner.indexOf(":");
  if (colon < 0) return null;
  const logical = owner.slice(0, colon);
  let id = owner.slice(colon + 1);
  let step: string | undefined;
  const stepAt = id.indexOf("/step/");
  if (stepAt >= 0) {
    step = id.slice(stepAt + "/step/".length);
    id = id.slice(0, stepAt);
  }
  const table = (Object.keys(OWNER_TABLE) as ScannedTable[]).find((t) => OWNER_TABLE[t] === logical);
  return table ? { table, id, ...(step !== undefined ? { step } : {}) } : null;
}
