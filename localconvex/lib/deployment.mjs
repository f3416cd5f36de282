// One in-memory Convex deployment: convex-test running a functions folder, plus what convex-test
// leaves out (document size and value rules, Convex's limit texts, real upload and file URLs,
// content types of stored files). Calls run one at a time, in arrival order.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { inspect } from "node:util";
import { convexTest } from "convex-test";
import { defineSchema, makeFunctionReference } from "convex/server";
import { ConvexError, convexToJson, jsonToConvex } from "convex/values";
import { register } from "tsx/esm/api";
import { databaseOf, indexReads } from "./indexed_reads.mjs";
import {
  MAX_DOCUMENT_SIZE,
  argumentsTooLarge,
  checkWrittenFields,
  convexLimitText,
  nestingOf,
  toCleanJson,
  valueTooLarge,
} from "./values.mjs";
import { faithfulVectorSearch } from "./vector_search.mjs";

const EXTRA_PREFIX = "test_fixtures";
const UPLOAD_TOKEN_TTL_MS = 60 * 60 * 1000; // STORE_FILE_AUTHORIZATION_VALIDITY
const KIND_TITLE = { query: "Query", mutation: "Mutation", action: "Action" };
const LOG_LEVELS = { log: "LOG", info: "INFO", warn: "WARN", error: "ERROR", debug: "DEBUG" };

/** Every `.ts`/`.js` module under `root` (no node_modules, no dotfiles, no `.d.ts`). */
function moduleFiles(root) {
  const found = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith(".") || name === "node_modules") continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|js|mjs)$/.test(name) && !name.endsWith(".d.ts")) found.push(path);
    }
  };
  walk(root);
  return found;
}

/** `mastra/storage:handle` or `mastra/storage.js:handle` → `{module: "mastra/storage", name: "handle"}`, or null. */
export function parseFunctionPath(path) {
  if (typeof path !== "string") return null;
  const [modulePart, name = "default", extra] = path.split(":");
  if (extra !== undefined || !/^[A-Za-z_$][\w$]*$/.test(name)) return null;
  const module = modulePart.replace(/\.js$/, "");
  if (!/^[\w-]+(\/[\w.-]+)*$/.test(module) || module.split("/").some((part) => part === "..")) return null;
  return { module, name };
}

function errorMessageOf(error) {
  const name = typeof error?.name === "string" ? error.name : "Error";
  const message = error instanceof Error ? error.message : String(error);
  return `Uncaught ${name}: ${message}`;
}

/** At most `limit` characters of a diagnostic: Convex error texts can quote whole values. */
export function clip(text, limit = 2000) {
  const s = String(text);
  return s.length <= limit ? s : `${s.slice(0, limit)}... (${s.length - limit} more characters)`;
}

export class FunctionFailure extends Error {}

/**
 * The deployment. `load()` imports the schema and builds convex-test; `baseUrl` must be set (to
 * the server's own origin) before calls that hand out storage URLs.
 */
export class Deployment {
  constructor({ functionsDir, extraFunctionsDir = null }) {
    this.functionsDir = functionsDir;
    this.extraFunctionsDir = extraFunctionsDir;
    this.baseUrl = "";
    this.files = new Map(); // "mastra/storage" -> absolute path
    this.uploadTokens = new Map(); // token -> issued at (ms)
    this.fileUrls = new Map(); // storage id -> URL id, and back
    this.queue = Promise.resolve();
    this.savedConsole = {}; // console methods while a call's output is captured
  }

  async load() {
    register();
    const modules = {};
    const mount = (root, prefix) => {
      for (const file of moduleFiles(root)) {
        // An extra folder's schema.ts only adds tables (see below); it is not a module.
        if (prefix !== "" && relative(root, file).replace(/\.(ts|js|mjs)$/, "") === "schema") continue;
        const rel = prefix + relative(root, file).split("\\").join("/");
        const module = rel.replace(/\.(ts|js|mjs)$/, "");
        if (this.files.has(module)) throw new Error(`two modules for ${module}: ${this.files.get(module)} and ${file}`);
        this.files.set(module, file);
        modules[`/convex/${rel}`] = () => import(pathToFileURL(file).href);
      }
    };
    mount(this.functionsDir, "");
    if (this.extraFunctionsDir) mount(this.extraFunctionsDir, `${EXTRA_PREFIX}/`);
    if (!this.files.has("schema")) throw new Error(`no schema.ts in ${this.functionsDir}`);
    // Import everything now, as a deploy would: a module that does not load stops the server.
    for (const file of this.files.values()) await import(pathToFileURL(file).href);
    const schema = await this.#schema();
    this.t = convexTest({ schema, modules, transactionLimits: true });
    // Index lookups read their index range, not every document (see indexed_reads.mjs).
    if (!(await indexReads(this.t))) throw new Error("convex-test changed: cannot index its reads");
    // `ctx.vectorSearch` answers as Convex does (see vector_search.mjs).
    if (!faithfulVectorSearch(await databaseOf(this.t))) {
      throw new Error("convex-test changed: cannot replace its vector search");
    }
    await this.#hookRuntime();
  }

  // The functions folder's schema, plus the tables of the extra folder's `schema.ts` if it has one
  // (test-only tables, e.g. a vector table with a vector index, never deployed with `convex/`).
  async #schema() {
    const schema = (await import(pathToFileURL(this.files.get("schema")).href)).default;
    const extraDir = this.extraFunctionsDir;
    const extraFile = extraDir && moduleFiles(extraDir).find((f) => /^schema\.(ts|js|mjs)$/.test(relative(extraDir, f)));
    if (!extraFile) return schema;
    const extra = (await import(pathToFileURL(extraFile).href)).default;
    const clash = Object.keys(extra.tables).find((name) => name in schema.tables);
    if (clash !== undefined) throw new Error(`${extraFile} redefines table ${clash} of the functions folder's schema`);
    return defineSchema(
      { ...schema.tables, ...extra.tables },
      { schemaValidation: schema.schemaValidation, strictTableNameTypes: schema.strictTableNameTypes },
    );
  }

  // convex-test installs `globalThis.Convex`, the syscall layer every Convex function calls into.
  // Storage syscalls are answered with this server's URLs, and written values are checked first.
  async #hookRuntime() {
    const runtime = globalThis.Convex;
    const deployment = this;
    globalThis.Convex = {
      get syscall() {
        return runtime.syscall;
      },
      get jsSyscall() {
        return runtime.jsSyscall;
      },
      get asyncSyscall() {
        const inner = runtime.asyncSyscall;
        return (op, jsonArgs) => deployment.#asyncSyscall(inner, op, jsonArgs);
      },
    };
    // Every document write reports the written document's size to convex-test's transaction
    // metrics: the one place that sees the whole document after an insert, patch or replace.
    const metricsUrl = new URL("./transactionMetrics.js", import.meta.resolve("convex-test")).href;
    const { TransactionMetricsTracker } = await import(metricsUrl);
    const tracker = TransactionMetricsTracker.prototype;
    for (const method of ["trackRead", "trackWrite"]) {
      if (typeof tracker[method] !== "function") {
        throw new Error(`convex-test changed: TransactionMetricsTracker.${method} is missing`);
      }
    }
    const withConvexTexts = (original) =>
      function (...args) {
        try {
          return original.apply(this, args);
        } catch (error) {
          throw new Error(convexLimitText(error.message));
        }
      };
    const trackWrite = withConvexTexts(tracker.trackWrite);
    tracker.trackRead = withConvexTexts(tracker.trackRead);
    tracker.trackWrite = function (documentSize) {
      if (documentSize > MAX_DOCUMENT_SIZE) throw new Error(valueTooLarge(documentSize));
      return trackWrite.call(this, documentSize);
    };
  }

  async #asyncSyscall(inner, op, jsonArgs) {
    switch (op) {
      case "1.0/insert":
        checkWrittenFields("insert", JSON.parse(jsonArgs).value);
        return await inner(op, jsonArgs);
      case "1.0/shallowMerge":
        checkWrittenFields("patch", JSON.parse(jsonArgs).value);
        return await inner(op, jsonArgs);
      case "1.0/replace":
        checkWrittenFields("replace", JSON.parse(jsonArgs).value);
        return await inner(op, jsonArgs);
      case "1.0/storageGenerateUploadUrl":
        return JSON.stringify(`${this.baseUrl}/api/storage/upload?token=${this.#issueUploadToken()}`);
      case "1.0/storageGetUrl": {
        const found = JSON.parse(await inner(op, jsonArgs));
        if (found === null) return JSON.stringify(null);
        return JSON.stringify(`${this.baseUrl}/api/storage/${this.#urlIdOf(JSON.parse(jsonArgs).storageId)}`);
      }
      default:
        return await inner(op, jsonArgs);
    }
  }

  #issueUploadToken() {
    const now = Date.now();
    for (const [token, issued] of this.uploadTokens) {
      if (now - issued > UPLOAD_TOKEN_TTL_MS) this.uploadTokens.delete(token);
    }
    const token = randomBytes(24).toString("base64url");
    this.uploadTokens.set(token, now);
    return token;
  }

  // Convex file URLs name a file by a UUID of their own, not by its storage id.
  #urlIdOf(storageId) {
    let urlId = this.fileUrls.get(storageId);
    if (urlId === undefined) {
      urlId = randomUUID();
      this.fileUrls.set(storageId, urlId);
      this.fileUrls.set(urlId, storageId);
    }
    return urlId;
  }

  /** Runs `work` after every call before it has finished. */
  serialized(work) {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** `{kind, visibility}` of an exported Convex function, or null. */
  async describe(parsed) {
    const file = this.files.get(parsed.module);
    if (file === undefined) return null;
    const func = (await import(pathToFileURL(file).href))[parsed.name];
    if (typeof func !== "function" || !(func.isQuery || func.isMutation || func.isAction)) return null;
    return {
      kind: func.isQuery ? "query" : func.isMutation ? "mutation" : "action",
      visibility: func.isInternal ? "internal" : "public",
    };
  }

  /**
   * Calls a function as the HTTP API does. `kind` is the endpoint's (null: any, as `/api/run`).
   * Returns `{value, logLines}`; throws FunctionFailure (`errorMessage`, `errorData`) when the
   * call fails in a way Convex reports as a function error.
   */
  async call({ kind, path, args, isAdmin, format }) {
    const parsed = parseFunctionPath(path);
    const canonical = `${parsed.module}.js:${parsed.name}`;
    const fail = (message, error) => {
      const failure = new FunctionFailure(message);
      failure.errorMessage = `[Request ID: ${randomBytes(8).toString("hex")}] Server Error\n${message}`;
      failure.logLines = error?.logLines ?? [];
      if (error instanceof ConvexError || error?.name === "ConvexError") {
        failure.errorData = exportValue(error.data, format);
      }
      return failure;
    };
    let convexArgs;
    try {
      nestingOf([args]);
      convexArgs = jsonToConvex(args);
    } catch (error) {
      throw fail(`Invalid arguments for ${canonical}: ${error.message}`);
    }
    const found = await this.describe(parsed);
    if (found === null || (found.visibility === "internal" && !isAdmin)) {
      const shown = parsed.name === "default" ? parsed.module : `${parsed.module}:${parsed.name}`;
      throw fail(
        `Could not find public function for '${shown}'. Did you forget to run \`npx convex dev\` or \`npx convex deploy\`?`,
      );
    }
    if (kind !== null && found.kind !== kind) {
      throw fail(`Trying to execute ${canonical} as ${KIND_TITLE[kind]}, but it is defined as ${KIND_TITLE[found.kind]}.`);
    }
    const tooLarge = argumentsTooLarge(canonical, convexArgs);
    if (tooLarge !== null) throw fail(tooLarge);
    return await this.serialized(async () => {
      const logLines = this.#captureConsole();
      try {
        const reference = makeFunctionReference(`${parsed.module}:${parsed.name}`);
        const run = { query: this.t.query, mutation: this.t.mutation, action: this.t.action }[found.kind];
        const value = await run(reference, convexArgs);
        return { value: exportValue(value, format), logLines };
      } catch (error) {
        const failure = fail(errorMessageOf(error), error);
        failure.logLines = logLines;
        throw failure;
      } finally {
        this.#restoreConsole();
      }
    });
  }

  #captureConsole() {
    const lines = [];
    for (const [method, level] of Object.entries(LOG_LEVELS)) {
      this.savedConsole[method] = console[method];
      console[method] = (...parts) => {
        const text = parts.map((part) => (typeof part === "string" ? part : inspect(part, { depth: 4 })));
        lines.push(`[${level}] ${text.join(" ")}`);
      };
    }
    return lines;
  }

  #restoreConsole() {
    Object.assign(console, this.savedConsole);
  }

  /** Checks an upload token: null when good, else `{status, code, message}` as Convex answers. */
  checkUploadToken(token) {
    const issued = this.uploadTokens.get(token);
    if (issued === undefined) {
      return { status: 401, code: "StorageTokenInvalid", message: "Couldn't decode the StoreFileAuthorization token" };
    }
    if (Date.now() - issued >= UPLOAD_TOKEN_TTL_MS) {
      return { status: 401, code: "StorageTokenExpired", message: "Store File Authorization expired" };
    }
    return null;
  }

  /** Stores uploaded bytes as a file (with its content type, or null); returns the storage id. */
  async storeFile(bytes, contentType) {
    return await this.serialized(() =>
      this.t.run(async (ctx) => {
        const storageId = await ctx.storage.store(new Blob([bytes], contentType ? { type: contentType } : {}));
        // Convex's `_storage` documents carry `contentType`; convex-test's do not.
        await globalThis.Convex.asyncSyscall(
          "1.0/shallowMerge",
          JSON.stringify({ table: "_storage", id: storageId, value: { contentType: contentType ?? null } }),
        );
        return storageId;
      }),
    );
  }

  /** `{bytes, contentType, sha256}` of the file a storage URL names, or null. */
  async readFile(urlId) {
    const storageId = this.fileUrls.get(urlId);
    if (storageId === undefined) return null;
    const file = await this.serialized(() =>
      this.t.run(async (ctx) => {
        const doc = await ctx.db.system.get(storageId);
        const blob = doc === null ? null : await ctx.storage.get(storageId);
        if (blob === null) return null;
        // t.run returns Convex values only: bytes travel as an ArrayBuffer.
        return { bytes: await blob.arrayBuffer(), contentType: doc.contentType ?? null, sha256: doc.sha256 };
      }),
    );
    return file === null ? null : { ...file, bytes: Buffer.from(file.bytes) };
  }
}

/** A Convex value in the HTTP API's output `format` (`json` unless `convex_encoded_json`). */
export function exportValue(value, format) {
  return format === "convex_encoded_json" ? convexToJson(value === undefined ? null : value) : toCleanJson(value);
}

/** The base64 sha256 of bytes, as Convex stores and checks it. */
export function sha256Base64(bytes) {
  return createHash("sha256").update(bytes).digest("base64");
}
