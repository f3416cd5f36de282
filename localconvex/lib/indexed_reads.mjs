// Indexed reads for convex-test's in-memory database.
//
// convex-test answers every query, index lookups included, by walking every document of every
// table (and matching a regular expression against each document id). A real Convex deployment
// reads an index range. The difference made the stand-in itself the bottleneck: a call that looks
// up one row got slower with every document stored anywhere (a 16-object lease took 6 ms on an
// empty database and 33 ms with 6,000 messages stored), which no real deployment does.
//
// `indexReads(t)` keeps, for one convex-test instance, the ids of each table's committed documents
// and, for each schema index, those ids grouped by the string values of the index's leading fields.
// A query then walks only its candidates: the documents of its table, or of its index bucket when
// the range starts with equalities to strings (`eq("bucket", b).eq("key", k)`), plus whatever the
// running transaction wrote to that table. convex-test still evaluates every range filter, sorts, filters and limits the
// candidates as before, so answers, read limits and errors are unchanged.
import { AsyncLocalStorage } from "node:async_hooks";
import { fieldOf } from "./values.mjs";

const ROOT_COMPONENT = "";

/** The root `DatabaseFake` of a convex-test instance, caught as convex-test enters its context. */
export async function databaseOf(t) {
  const run = AsyncLocalStorage.prototype.run;
  let found = null;
  AsyncLocalStorage.prototype.run = function (store, ...rest) {
    found ??= store?.components?.[ROOT_COMPONENT]?.db ?? null;
    return run.call(this, store, ...rest);
  };
  try {
    await t.run(async () => null);
  } finally {
    AsyncLocalStorage.prototype.run = run;
  }
  return found;
}

function tableOf(id) {
  const digits = /^[0-9]+/.exec(id);
  return digits === null || digits[0].length === id.length ? null : id.slice(digits[0].length);
}

/**
 * Make queries on `t`'s root database read candidates instead of every document. Returns false
 * (and changes nothing) if this convex-test version does not look as expected.
 */
export async function indexReads(t) {
  const db = await databaseOf(t);
  const expected = ["_iterateDocs", "_resolveQuerySource", "commit", "get"];
  if (db === null || !expected.every((name) => typeof db[name] === "function") || typeof db._documents !== "object") {
    return false;
  }
  // table -> Set<id>; "table.index" -> Map<JSON of leading string values, Set<id>>
  const tables = new Map();
  const buckets = new Map();
  const indexesOf = (table) => db._schema?.tables.get(table)?.indexes ?? [];

  // The keys of a document in an index: one per prefix of the index's fields that holds only
  // strings (`["bench"]`, `["bench","t-1/ab"]`), as JSON.
  const keysOf = (document, index) => {
    const keys = [];
    if (document === null) return keys;
    const prefix = [];
    for (const field of index.fields) {
      const value = fieldOf(document, field);
      if (typeof value !== "string") break;
      prefix.push(value);
      keys.push(JSON.stringify(prefix));
    }
    return keys;
  };
  const bucketOf = (table, index) => {
    const name = `${table}.${index.indexDescriptor}`;
    let bucket = buckets.get(name);
    if (bucket === undefined) {
      bucket = new Map();
      buckets.set(name, bucket);
    }
    return bucket;
  };
  const update = (id, before, after) => {
    const table = tableOf(id);
    if (table === null) return;
    let ids = tables.get(table);
    if (ids === undefined) {
      ids = new Set();
      tables.set(table, ids);
    }
    if (after === null) ids.delete(id);
    else ids.add(id);
    for (const index of indexesOf(table)) {
      const bucket = bucketOf(table, index);
      const now = new Set(keysOf(after, index));
      for (const key of keysOf(before, index)) if (!now.has(key)) bucket.get(key)?.delete(id);
      for (const key of now) {
        let members = bucket.get(key);
        if (members === undefined) {
          members = new Set();
          bucket.set(key, members);
        }
        members.add(id);
      }
    }
  };
  for (const [id, document] of Object.entries(db._documents)) update(id, null, document);

  const commit = db.commit;
  db.commit = function (...args) {
    // Only the outermost commit moves writes into `_documents`; nested ones merge upward.
    const outermost = this._writes.length === 1;
    const written = outermost ? Object.keys(this._writes[0]).map((id) => [id, this._documents[id] ?? null]) : [];
    const result = commit.apply(this, args);
    for (const [id, before] of written) update(id, before, this._documents[id] ?? null);
    return result;
  };

  let hint = null;
  const resolveQuerySource = db._resolveQuerySource;
  db._resolveQuerySource = function (query) {
    hint = candidatesFor(query.source);
    try {
      return resolveQuerySource.call(this, query);
    } finally {
      hint = null;
    }
  };
  const candidatesFor = (source) => {
    if (source?.type !== "IndexRange") return null;
    const [table, indexName] = source.indexName.split(".");
    const index = indexesOf(table).find((i) => i.indexDescriptor === indexName);
    if (index === undefined) return null;
    // The range's leading equalities on the index's fields, while their values are strings (query
    // values arrive as JSON, where a string is itself; a field of any other type never compares
    // equal to a string).
    const prefix = [];
    for (const [position, filter] of (source.range ?? []).entries()) {
      if (filter?.type !== "Eq" || filter.fieldPath !== index.fields[position] || typeof filter.value !== "string") break;
      prefix.push(filter.value);
    }
    if (prefix.length === 0) return null;
    return { table, ids: bucketOf(table, index).get(JSON.stringify(prefix)) ?? new Set() };
  };

  db._iterateDocs = function (tableName, callback) {
    const ids = new Set(hint !== null && hint.table === tableName ? hint.ids : (tables.get(tableName) ?? []));
    hint = null;
    for (const layer of this._writes) {
      for (const id of Object.keys(layer)) if (tableOf(id) === tableName) ids.add(id);
    }
    for (const id of ids) {
      const document = this.get(tableName, id);
      if (document !== null) callback(document);
    }
  };
  return true;
}
