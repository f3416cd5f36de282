// Convex's value rules and their error texts, for what convex-test does not check itself.
//
// Texts are the backend's own (github.com/get-convex/convex-backend):
//   crates/value/src/size.rs, array.rs, object.rs   nesting, array length, field count
//   crates/common/src/document.rs                   document nesting (16 levels)
//   crates/isolate/src/helpers.rs                   "Arguments for ... are too large (actual: ..., limit: ...)"
//   crates/database/src/reads.rs, writes.rs         per-transaction read/write limits
// Sizes print as Rust's `humansize` BINARY does: two decimals at most, trailing zeros dropped.
import { getConvexSize } from "convex/values";

export const MIB = 1024 * 1024;
export const MAX_DOCUMENT_SIZE = MIB; // MAX_USER_SIZE
export const MAX_ARGUMENTS_SIZE = 16 * MIB; // FUNCTION_MAX_ARGS_SIZE
export const MAX_DOCUMENT_NESTING = 16;
export const MAX_VALUE_NESTING = 64;
export const MAX_ARRAY_LENGTH = 8192;
export const MAX_OBJECT_FIELDS = 1024;

/** The value at a dotted field path (`a.b`) of a document, as Convex reads it; `undefined` when absent. */
export function fieldOf(document, fieldPath) {
  let value = document;
  for (const part of fieldPath.split(".")) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
    value = value[part];
  }
  return value;
}

const OVER_LIMIT_HELP =
  "Consider using smaller limits in your queries, paginating your queries, or using indexed queries " +
  "with a selective index range expressions.";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** `1.53 MiB`, `1 MiB`, `512 B`: a byte count as Convex prints it. */
export function formatSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${bytes} B`;
  return `${value.toFixed(2).replace(/\.?0+$/, "")} ${UNITS[unit]}`;
}

export function valueTooLarge(size, limit = MAX_DOCUMENT_SIZE) {
  return `Value is too large (${formatSize(size)} > maximum size ${formatSize(limit)})`;
}

/** The message of a function call whose arguments are over 16 MiB, or null. */
export function argumentsTooLarge(canonicalPath, args) {
  // Convex measures the positional argument array: `[args]`.
  const size = getConvexSize([args]);
  if (size <= MAX_ARGUMENTS_SIZE) return null;
  return `Arguments for ${canonicalPath} are too large (actual: ${formatSize(size)}, limit: ${formatSize(MAX_ARGUMENTS_SIZE)})`;
}

// A JSON-encoded Convex value: `{"$bytes": ...}`, `{"$integer": ...}`, `{"$float": ...}` are leaves.
function isEncodedLeaf(value) {
  const keys = Object.keys(value);
  return keys.length === 1 && (keys[0] === "$bytes" || keys[0] === "$integer" || keys[0] === "$float");
}

/**
 * The nesting of a JSON-encoded Convex value (a scalar is 0, `[1]` is 1), checking array lengths
 * and field counts on the way. Throws Convex's message for the first rule broken.
 */
export function nestingOf(value) {
  if (value === null || typeof value !== "object") return 0;
  let deepest = 0;
  if (Array.isArray(value)) {
    if (value.length > MAX_ARRAY_LENGTH) {
      throw new Error(`Array length is too long (${value.length} > maximum length ${MAX_ARRAY_LENGTH})`);
    }
    for (const item of value) deepest = Math.max(deepest, nestingOf(item));
  } else {
    if (isEncodedLeaf(value)) return 0;
    const fields = Object.keys(value);
    if (fields.length > MAX_OBJECT_FIELDS) {
      throw new Error(`Object has too many fields (${fields.length} > maximum number ${MAX_OBJECT_FIELDS})`);
    }
    for (const field of fields) deepest = Math.max(deepest, nestingOf(value[field]));
  }
  const nesting = deepest + 1;
  if (nesting > MAX_VALUE_NESTING) {
    throw new Error(`Value is too nested (nested ${nesting} levels deep > maximum nesting ${MAX_VALUE_NESTING})`);
  }
  return nesting;
}

/** Checks a document (or the fields of a patch) a mutation writes; throws Convex's message. */
export function checkWrittenFields(method, fields) {
  let nesting;
  try {
    // A document is an object: one level for itself, plus its deepest field. `$undefined`
    // marks a field a patch removes.
    let deepest = 0;
    for (const value of Object.values(fields ?? {})) {
      if (value !== null && typeof value === "object" && "$undefined" in value) continue;
      deepest = Math.max(deepest, nestingOf(value));
    }
    nesting = deepest + 1;
  } catch (error) {
    throw new Error(`Invalid argument \`value\` for \`db.${method}\`: ${error.message}`);
  }
  if (nesting > MAX_DOCUMENT_NESTING) {
    throw new Error(
      `Document is too nested (nested ${nesting} levels deep > maximum nesting ${MAX_DOCUMENT_NESTING})`,
    );
  }
}

// convex-test's texts for the per-transaction limits, and Convex's own for the same limits.
const LIMIT_TEXTS = [
  [
    /^Read too much data in a single function execution \(limit: (\d+) bytes\)\..*$/s,
    (limit) => `Too many bytes read in a single function execution (limit: ${limit} bytes). ${OVER_LIMIT_HELP}`,
  ],
  [
    /^Scanned too many documents in a single function execution \(limit: (\d+)\)\..*$/s,
    (limit) => `Too many documents read in a single function execution (limit: ${limit}). ${OVER_LIMIT_HELP}`,
  ],
  [
    /^Wrote too much data in a single function execution \(limit: (\d+) bytes\)\..*$/s,
    (limit) => `Too many bytes written in a single function execution (limit: ${limit} bytes)`,
  ],
  [
    /^Wrote too many documents in a single function execution \(limit: (\d+)\)\..*$/s,
    (limit) => `Too many writes in a single function execution (limit: ${limit})`,
  ],
];

/** Convex's text for a convex-test limit message; other messages unchanged. */
export function convexLimitText(message) {
  for (const [pattern, text] of LIMIT_TEXTS) {
    const match = pattern.exec(message);
    if (match) return text(match[1]);
  }
  return message;
}

/** A Convex value as `format: "json"` exports it: Int64 as a decimal string, bytes as base64. */
export function toCleanJson(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "boolean" || typeof value === "string") return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map(toCleanJson);
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    if (item !== undefined) out[key] = toCleanJson(item);
  }
  return out;
}
