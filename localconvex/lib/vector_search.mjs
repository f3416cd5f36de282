// Vector search (`ctx.vectorSearch` in actions) as a Convex deployment answers it.
//
// convex-test runs `ctx.vectorSearch`: its `DatabaseFake.vectorSearch` scores every document of
// the table by cosine similarity, keeps those matching the filter expression and returns the best
// `limit`. Where it differs from Convex, `faithfulVectorSearch(db)` replaces it with the rules of
// Convex's backend (`crates/vector`: `MAX_VECTOR_RESULTS`, `DEFAULT_VECTOR_LIMIT`,
// `MAX_FILTER_LENGTH`, its error texts) and its docs:
// - no `limit` means 10 results (convex-test returned every document); over 256 is refused;
// - the query vector must have the index's dimensions (convex-test scored any length, NaN or worse);
// - filters may only name the index's `filterFields`, at most 64 conditions in all;
// - only documents whose vector field holds a vector of the index's dimensions are in the index
//   (convex-test scored the rest too, and threw on a document without the field);
// - equal scores are ordered by document id.
// Matching stays convex-test's: `q.eq(field, value)` clauses combined by `q.or`, values compared
// as Convex values, a missing field equal to `undefined`. Scores are exact cosine similarity
// (Convex searches approximately; on small tables it is exact), 0 for a zero vector.
import { convexToJson } from "convex/values";
import { fieldOf } from "./values.mjs";

const DEFAULT_VECTOR_LIMIT = 10;
const MAX_VECTOR_RESULTS = 256;
const MAX_FILTER_LENGTH = 64;

/** A comparable key of a Convex value (or `undefined`, the value of a missing field). */
function valueKey(value) {
  return value === undefined ? "undefined" : JSON.stringify(convexToJson(value));
}

/** A filter literal as the vector search syscall carries it (`{$literal: <convex JSON>}`). */
function literalKey(literal) {
  if (literal !== null && typeof literal === "object" && "$undefined" in literal) return "undefined";
  return JSON.stringify(literal);
}

/** The `[fieldPath, valueKey]` conditions of a filter expression; any one of them must hold. */
function conditionsOf(expression, found = []) {
  if (expression?.$eq !== undefined) {
    const [left, right] = expression.$eq;
    if (typeof left?.$field !== "string" || right?.$literal === undefined) {
      throw new Error("`q.eq` must take a field path as its first argument and a value as its second");
    }
    found.push([left.$field, literalKey(right.$literal)]);
    return found;
  }
  if (Array.isArray(expression?.$or)) {
    for (const inner of expression.$or) conditionsOf(inner, found);
    return found;
  }
  throw new Error("Filters should be a combination of `q.eq` and `q.or`.");
}

function cosine(a, b) {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    normA += a[i] * a[i];
    normB += b[i] * b[i];
  }
  return normA === 0 || normB === 0 ? 0 : dot / (Math.sqrt(normA) * Math.sqrt(normB));
}

function isIndexedVector(value, dimensions) {
  return Array.isArray(value) && value.length === dimensions && value.every((x) => typeof x === "number");
}

/**
 * Replace `db.vectorSearch` (convex-test's root `DatabaseFake`). Returns false (and changes
 * nothing) if this convex-test version does not look as expected.
 */
export function faithfulVectorSearch(db) {
  if (typeof db?.vectorSearch !== "function" || typeof db._iterateDocs !== "function") return false;
  db.vectorSearch = function (tableAndIndexName, vector, expressions, limit) {
    const [tableName, indexName] = tableAndIndexName.split(".");
    const index = this._schema?.tables.get(tableName)?.vectorIndexes?.find((i) => i.indexDescriptor === indexName);
    if (index === undefined) {
      throw new Error(
        `Cannot use vector index "${indexName}" for table "${tableName}" because it is not declared in the schema.`,
      );
    }
    const requested = limit ?? DEFAULT_VECTOR_LIMIT;
    if (requested > MAX_VECTOR_RESULTS) {
      throw new Error(`Vector queries can fetch at most ${MAX_VECTOR_RESULTS} results, requested ${requested}.`);
    }
    const conditions = expressions.flatMap((expression) => conditionsOf(expression));
    for (const [field] of conditions) {
      if (!index.filterFields.includes(field)) {
        throw new Error(
          `Vector query against ${tableAndIndexName} contains a filter on ${JSON.stringify(field)} but that ` +
            "field isn't indexed for filtering in `filterFields`.",
        );
      }
    }
    if (conditions.length > MAX_FILTER_LENGTH) {
      throw new Error(
        `Vector query against ${tableAndIndexName} has too many conditions. Max: ${MAX_FILTER_LENGTH} Actual: ${conditions.length}`,
      );
    }
    if (vector.length !== index.dimensions) {
      throw new Error(`Expected a vector with dimensions ${index.dimensions}, received ${vector.length}.`);
    }
    const results = [];
    this._iterateDocs(tableName, (doc) => {
      const stored = fieldOf(doc, index.vectorField);
      if (!isIndexedVector(stored, index.dimensions)) return;
      if (conditions.length > 0 && !conditions.some(([field, key]) => valueKey(fieldOf(doc, field)) === key)) return;
      results.push({ _id: doc._id, _score: cosine(vector, stored) });
    });
    results.sort((a, b) => b._score - a._score || (a._id < b._id ? 1 : a._id > b._id ? -1 : 0));
    return results.slice(0, requested);
  };
  return true;
}
