#!/usr/bin/env node
// A local stand-in for a Convex deployment: convex-test runs the project's real `convex/` folder
// (schema, @mastra/convex handler, our functions) behind Convex's HTTP API.
//
//   CONVEX_ADMIN_KEY=... node localconvex/server.mjs [--port 0] [--functions DIR]
//                                                     [--extra-functions DIR] [--exit-on-stdin-close]
//
// Prints one line `{"event":"ready","url":"http://127.0.0.1:PORT"}` when listening (127.0.0.1 only).
// Adds what convex-test skips: the 1 MiB document limit, the 16 MiB argument limit, admin-key
// checks, Convex's HTTP status codes and error bodies, and file storage over HTTP.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import http from "node:http";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { register } from "tsx/esm/api";
import { convexTest } from "convex-test";
import { makeFunctionReference } from "convex/server";
import { ConvexError, convexToJson, getConvexSize, getDocumentSize, jsonToConvex } from "convex/values";

const HERE = dirname(fileURLToPath(import.meta.url));
const MIB = 1024 * 1024;
const MAX_DOCUMENT_BYTES = MIB;
const MAX_ARGUMENT_BYTES = 16 * MIB;
const MAX_CALL_BODY = 24 * MIB;
const MAX_UPLOAD_BODY = 200 * MIB;
const UPLOAD_TOKEN_TTL_MS = 60 * 60 * 1000;
const FAKE_ORIGIN = "https://some-deployment.convex.cloud";
const WRITE_SYSCALLS = new Set(["1.0/insert", "1.0/shallowMerge", "1.0/replace"]);

// --- command line -----------------------------------------------------------------------------

function parseArgs(argv) {
  const options = { port: 0, functions: resolve(HERE, "..", "convex"), extra: null, exitOnStdinClose: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--port") options.port = Number(argv[++i]);
    else if (arg === "--functions") options.functions = resolve(argv[++i]);
    else if (arg === "--extra-functions") options.extra = resolve(argv[++i]);
    else if (arg === "--exit-on-stdin-close") options.exitOnStdinClose = true;
    else fail(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) fail("--port must be 0..65535");
  return options;
}

function fail(message) {
  process.stderr.write(`localconvex: ${message}\n`);
  process.exit(2);
}

const options = parseArgs(process.argv.slice(2));
const ADMIN_KEY = process.env.CONVEX_ADMIN_KEY ?? "";
if (!ADMIN_KEY) fail("set CONVEX_ADMIN_KEY (the admin key clients must send)");

// --- loading the functions folder -------------------------------------------------------------

function moduleFiles(root) {
  const found = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      if (name.startsWith(".") || name === "node_modules") continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|js|mjs)$/.test(name) && !name.endsWith(".d.ts") && !/^(tsconfig|package)/.test(name)) found.push(path);
    }
  };
  walk(root);
  return found;
}

register();
const modules = {};
const fileOf = new Map(); // "mastra/storage" -> absolute file
for (const file of moduleFiles(options.functions)) {
  const rel = relative(options.functions, file).replace(/\\/g, "/");
  modules[`/convex/${rel}`] = () => import(pathToFileURL(file).href);
  fileOf.set(rel.replace(/\.(ts|js|mjs)$/, ""), file);
}
if (options.extra) {
  for (const file of moduleFiles(options.extra)) {
    const rel = `test_fixtures/${relative(options.extra, file).replace(/\\/g, "/")}`;
    modules[`/convex/${rel}`] = () => import(pathToFileURL(file).href);
    fileOf.set(rel.replace(/\.(ts|js|mjs)$/, ""), file);
  }
}
const schema = (await import(pathToFileURL(join(options.functions, "schema.ts")).href)).default;
const t = convexTest({ schema, modules, transactionLimits: true });

// --- limits convex-test does not enforce ------------------------------------------------------

function formatMiB(bytes) {
  return `${(bytes / MIB).toFixed(2)} MiB`;
}

// Every database write of the Convex runtime goes through `Convex.asyncSyscall`: check the
// document it leaves behind, and fail the mutation (rolling it back) as Convex would.
const runtime = globalThis.Convex;
globalThis.Convex = {
  get syscall() {
    return runtime.syscall;
  },
  get jsSyscall() {
    return runtime.jsSyscall;
  },
  get asyncSyscall() {
    const inner = runtime.asyncSyscall;
    return async (op, jsonArgs) => {
      if (op === "1.0/insert") {
        const { value } = JSON.parse(jsonArgs);
        checkDocumentSize(getDocumentSize(jsonToConvex(value)));
      }
      const result = await inner(op, jsonArgs);
      if (WRITE_SYSCALLS.has(op) && op !== "1.0/insert") {
        const { table, id } = JSON.parse(jsonArgs);
        const doc = JSON.parse(await inner("1.0/get", JSON.stringify({ table, id })));
        if (doc !== null) checkDocumentSize(getDocumentSize(jsonToConvex(doc)));
      }
      return result;
    };
  },
};

function checkDocumentSize(size) {
  if (size > MAX_DOCUMENT_BYTES) {
    throw new Error(`Value is too large (${formatMiB(size)} > maximum size 1 MiB)`);
  }
}

// --- function calls ---------------------------------------------------------------------------

const loaded = new Map();
async function lookup(path) {
  const [modulePath, exportName = "default"] = path.split(":");
  const file = fileOf.get(modulePath);
  if (!file) return null;
  if (!loaded.has(modulePath)) loaded.set(modulePath, await import(pathToFileURL(file).href));
  const func = loaded.get(modulePath)[exportName];
  if (!func || typeof func !== "function" || !(func.isQuery || func.isMutation || func.isAction)) return null;
  const kind = func.isQuery ? "query" : func.isMutation ? "mutation" : "action";
  return { kind, visibility: func.isInternal ? "internal" : "public" };
}

// convex-test runs one function at a time; so does this server, in arrival order.
let queue = Promise.resolve();
function serialized(work) {
  const run = queue.then(work, work);
  queue = run.catch(() => undefined);
  return run;
}

const KIND_LETTER = { query: "Q", mutation: "M", action: "A" };
const issuedUploadTokens = new Map();
let baseUrl = "";

function requestId() {
  return randomBytes(8).toString("hex");
}

// convex-test names files by base64 sha256 in its fake URLs; serve them under a URL-safe name.
function publicJson(value) {
  let text = JSON.stringify(convexToJson(value === undefined ? null : value));
  text = text.replace(/https:\/\/some-deployment\.convex\.cloud\/api\/storage\/upload\?token=([0-9.]+)/g, (_m, token) => {
    issuedUploadTokens.set(token, Date.now());
    return `${baseUrl}/api/storage/upload?token=${token}`;
  });
  text = text.replace(/https:\/\/some-deployment\.convex\.cloud\/api\/storage\/([A-Za-z0-9+/=]+)/g, (_m, sha) => {
    return `${baseUrl}/api/storage/${sha.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
  });
  return text;
}

async function callFunction(kind, path, args, isAdmin) {
  const found = await lookup(path);
  if (found === null || (found.visibility === "internal" && !isAdmin)) {
    return {
      status: 404,
      body: {
        code: "FunctionNotFound",
        message: `Could not find public function for '${path}'. Did you forget to run \`npx convex dev\` or \`npx convex deploy\`?`,
      },
    };
  }
  if (kind !== null && found.kind !== kind) {
    return {
      status: 400,
      body: {
        code: "BadConvexFunctionType",
        message: `Trying to execute ${path} as ${title(kind)}, but it is defined as ${title(found.kind)}.`,
      },
    };
  }
  const id = requestId();
  const prefix = `[CONVEX ${KIND_LETTER[found.kind]}(${path})] [Request ID: ${id}] Server Error`;
  let convexArgs;
  try {
    convexArgs = jsonToConvex(args ?? {});
  } catch (error) {
    return { status: 400, body: { code: "BadJsonBody", message: String(error?.message ?? error) } };
  }
  const argBytes = getConvexSize(convexArgs);
  if (argBytes > MAX_ARGUMENT_BYTES) {
    const name = path.split(":").pop();
    return functionError(prefix, new Error(`Arguments for ${name} are too large (${formatMiB(argBytes)}, limit: 16 MiB)`), []);
  }
  return await serialized(async () => {
    const logLines = [];
    const saved = {};
    for (const level of ["log", "info", "warn", "error", "debug"]) {
      saved[level] = console[level];
      console[level] = (...parts) => logLines.push(parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" "));
    }
    try {
      const reference = makeFunctionReference(path);
      const value =
        found.kind === "query"
          ? await t.query(reference, convexArgs)
          : found.kind === "mutation"
            ? await t.mutation(reference, convexArgs)
            : await t.action(reference, convexArgs);
      return { status: 200, raw: `{"status":"success","value":${publicJson(value)},"logLines":${JSON.stringify(logLines)}}` };
    } catch (error) {
      return functionError(prefix, error, logLines);
    } finally {
      Object.assign(console, saved);
    }
  });
}

function functionError(prefix, error, logLines) {
  const isConvexError = error instanceof ConvexError || error?.name === "ConvexError";
  const message = String(error?.message ?? error);
  const body = {
    status: "error",
    errorMessage: `${prefix}\nUncaught ${isConvexError ? "ConvexError" : "Error"}: ${message}`,
    logLines,
  };
  if (isConvexError && error.data !== undefined) body.errorData = JSON.parse(publicJson(error.data));
  return { status: 560, body };
}

function title(kind) {
  return kind[0].toUpperCase() + kind.slice(1);
}

// --- file storage -----------------------------------------------------------------------------

const contentTypes = new Map(); // storage id -> content type

async function storeUpload(token, bytes, contentType) {
  const issued = issuedUploadTokens.get(token);
  if (issued === undefined || Date.now() - issued > UPLOAD_TOKEN_TTL_MS) {
    return { status: 400, body: { code: "InvalidUploadToken", message: "Upload URL is invalid or expired" } };
  }
  issuedUploadTokens.delete(token);
  const storageId = await serialized(() =>
    t.run(async (ctx) => await ctx.storage.store(new Blob([bytes], contentType ? { type: contentType } : {}))),
  );
  if (contentType) contentTypes.set(storageId, contentType);
  return { status: 200, body: { storageId } };
}

async function readFile(name) {
  const sha = name.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (name.length % 4)) % 4);
  return await serialized(() =>
    t.run(async (ctx) => {
      const files = await ctx.db.system.query("_storage").collect();
      const doc = files.find((file) => file.sha256 === sha);
      if (!doc) return null;
      const blob = await ctx.storage.get(doc._id);
      if (!blob) return null;
      return { id: doc._id, bytes: await blob.arrayBuffer() };
    }),
  );
}

// --- HTTP -------------------------------------------------------------------------------------

function send(res, status, body, raw) {
  const text = raw ?? JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req, limit) {
  return new Promise((resolveBody, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(Object.assign(new Error(`request body over ${formatMiB(limit)}`), { tooLarge: true }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolveBody(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function adminState(req) {
  const header = req.headers.authorization;
  if (!header) return "none";
  const [scheme, ...rest] = header.split(" ");
  if (scheme !== "Convex") return "none";
  const given = Buffer.from(rest.join(" "));
  const expected = Buffer.from(ADMIN_KEY);
  return given.length === expected.length && timingSafeEqual(given, expected) ? "admin" : "bad";
}

async function handle(req, res) {
  const url = new URL(req.url, "http://localhost");
  const path = url.pathname;
  if (req.method === "POST" && path === "/api/storage/upload") {
    const bytes = await readBody(req, MAX_UPLOAD_BODY);
    const answer = await storeUpload(url.searchParams.get("token") ?? "", bytes, req.headers["content-type"]);
    return send(res, answer.status, answer.body);
  }
  if ((req.method === "GET" || req.method === "HEAD") && path.startsWith("/api/storage/")) {
    const file = await readFile(path.slice("/api/storage/".length));
    if (file === null) return send(res, 404, { code: "FileNotFound", message: "File not found" });
    const type = contentTypes.get(file.id) ?? "application/octet-stream";
    res.writeHead(200, { "Content-Type": type, "Content-Length": file.bytes.byteLength });
    return res.end(req.method === "HEAD" ? undefined : Buffer.from(file.bytes));
  }
  const call = /^\/api\/(query|mutation|action)$/.exec(path);
  const run = /^\/api\/run\/(.+)\/([^/]+)$/.exec(path);
  if (req.method !== "POST" || (!call && !run)) {
    return send(res, 404, { code: "NotFound", message: `No route for ${req.method} ${path}` });
  }
  const admin = adminState(req);
  if (admin === "bad") {
    return send(res, 401, {
      code: "BadAdminKey",
      message: "The provided admin key was invalid for this instance",
    });
  }
  let body;
  try {
    body = JSON.parse((await readBody(req, MAX_CALL_BODY)).toString("utf8") || "{}");
  } catch (error) {
    if (error?.tooLarge) return send(res, 413, { code: "RequestTooLarge", message: error.message });
    return send(res, 400, { code: "BadJsonBody", message: "The request body is not valid JSON" });
  }
  const functionPath = call ? body.path : `${run[1]}:${run[2]}`;
  if (typeof functionPath !== "string" || !functionPath) {
    return send(res, 400, { code: "BadJsonBody", message: "Missing function path" });
  }
  if (body.format !== undefined && body.format !== "json" && body.format !== "convex_encoded_json") {
    return send(res, 400, { code: "BadJsonBody", message: `Unsupported format ${body.format}` });
  }
  const args = Array.isArray(body.args) ? body.args[0] : body.args;
  const answer = await callFunction(call ? call[1] : null, functionPath, args, admin === "admin");
  return send(res, answer.status, answer.body, answer.raw);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    process.stderr.write(`localconvex: ${error?.stack ?? error}\n`);
    if (!res.headersSent) send(res, error?.tooLarge ? 413 : 500, { code: "InternalServerError", message: "internal error" });
    else res.destroy();
  });
});
server.keepAliveTimeout = 30_000;

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (options.exitOnStdinClose) {
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}

server.listen(options.port, "127.0.0.1", () => {
  baseUrl = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(JSON.stringify({ event: "ready", url: baseUrl }) + "\n");
});
