#!/usr/bin/env node
// A local stand-in for a Convex deployment: convex-test runs a Convex functions folder (by default
// this repository's `convex/`) behind Convex's HTTP API, on 127.0.0.1 only. See README.md.
//
//   CONVEX_ADMIN_KEY=... node localconvex/server.mjs [--port N] [--functions DIR]
//                                                     [--extra-functions DIR] [--exit-on-stdin-close]
//
// When listening it prints one line, `{"event":"ready","url":"http://127.0.0.1:PORT"}`; all else
// goes to stderr, never a request body or the admin key.
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Deployment, FunctionFailure, clip, parseFunctionPath, sha256Base64 } from "./lib/deployment.mjs";
import { MIB, formatSize } from "./lib/values.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const MAX_CALL_BODY = 20 * MIB; // arguments may be 16 MiB, and JSON encoding adds to that
const MAX_UPLOAD_BODY = 100 * MIB;
const FUNCTION_FAILED = 560;
const CACHE_CONTROL = "private, max-age=2592000"; // storage GETs are immutable: 30 days
const USAGE =
  "usage: CONVEX_ADMIN_KEY=... node server.mjs [--port N] [--functions DIR] [--extra-functions DIR] [--exit-on-stdin-close]";

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// --- command line -----------------------------------------------------------------------------

function exitWith(message) {
  process.stderr.write(`localconvex: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { port: 0, functions: resolve(HERE, "..", "convex"), extra: null, exitOnStdinClose: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i] ?? exitWith(`${flag} needs a value\n${USAGE}`);
    if (flag === "--port") options.port = Number(value());
    else if (flag === "--functions") options.functions = resolve(value());
    else if (flag === "--extra-functions") options.extra = resolve(value());
    else if (flag === "--exit-on-stdin-close") options.exitOnStdinClose = true;
    else if (flag === "--help" || flag === "-h") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else exitWith(`unknown argument ${flag}\n${USAGE}`);
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) exitWith("--port must be 0..65535");
  return options;
}

// --- requests ---------------------------------------------------------------------------------

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** The request body, at most `limit` bytes (else HttpError 413, the rest left unread). */
function readBody(req, limit) {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolveBody, reject) => {
    const chunks = [];
    let size = 0;
    const onData = (chunk) => {
      size += chunk.length;
      if (size > limit) {
        req.off("data", onData);
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.on("end", () => resolveBody(Buffer.concat(chunks, size)));
    req.on("error", reject);
  });
}

function tooLarge(limit) {
  return new HttpError(413, "PayloadTooLarge", `Failed to buffer the request body: length limit exceeded (${formatSize(limit)})`);
}

function isJsonContentType(header) {
  const mime = String(header ?? "").split(";")[0].trim().toLowerCase();
  return mime === "application/json" || (mime.startsWith("application/") && mime.endsWith("+json"));
}

/** "admin", "bad" (a wrong admin key) or "none" (no key, or a user's Bearer token). */
function authOf(req, url, adminKey) {
  const header = req.headers.authorization;
  let given = null;
  if (header !== undefined) {
    if (header.length < 7) throw new HttpError(400, "InvalidHeaderFailure", "Invalid authentication header");
    if (header.slice(0, 7).toLowerCase() === "convex ") given = header.slice(7);
    else if (/^bearer /i.test(header)) return "none";
    else throw new HttpError(400, "InvalidAdminKey", "Invalid admin key");
  } else if (url.searchParams.has("adminKey")) {
    given = url.searchParams.get("adminKey");
  }
  if (given === null) return "none";
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(adminKey).digest();
  return timingSafeEqual(a, b) ? "admin" : "bad";
}

async function handleCall(deployment, adminKey, req, res, url, kind, runPath) {
  if (!isJsonContentType(req.headers["content-type"])) {
    throw new HttpError(400, "BadJsonBody", "Expected request with `Content-Type: application/json`");
  }
  const raw = await readBody(req, MAX_CALL_BODY);
  let body;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, "BadJsonBody", `Failed to parse the request body as JSON: ${error.message}`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(400, "BadJsonBody", "Failed to deserialize the JSON body into the target type: expected an object");
  }
  for (const field of runPath === null ? ["path", "args"] : ["args"]) {
    if (!(field in body)) {
      throw new HttpError(400, "BadJsonBody", `Failed to deserialize the JSON body into the target type: missing field \`${field}\``);
    }
  }
  const format = body.format ?? "json";
  if (!["json", "convex_cleaned_json", "convex_encoded_json"].includes(format)) {
    throw new HttpError(400, "BadJsonBody", `Unsupported value format: ${String(format)}`);
  }
  const path = runPath ?? body.path;
  if (parseFunctionPath(path) === null) {
    throw new HttpError(400, "BadConvexFunctionIdentifier", `${String(path)} is not a valid path to a Convex function.`);
  }
  const auth = authOf(req, url, adminKey);
  if (auth === "bad") throw new HttpError(401, "BadAdminKey", "The provided admin key was invalid for this instance");
  // The official JS client sends positional arguments: `[args]`.
  const args = Array.isArray(body.args) ? (body.args[0] ?? {}) : body.args;
  try {
    const { value, logLines } = await deployment.call({ kind, path, args, isAdmin: auth === "admin", format });
    send(res, 200, { status: "success", value, logLines });
  } catch (error) {
    if (!(error instanceof FunctionFailure)) throw error;
    const failure = { status: "error", errorMessage: error.errorMessage, logLines: error.logLines };
    if (error.errorData !== undefined) failure.errorData = error.errorData;
    send(res, FUNCTION_FAILED, failure);
  }
}

async function handleUpload(deployment, req, res, url) {
  const token = url.searchParams.get("token");
  if (token === null) throw new HttpError(400, "BadQueryArgs", "Failed to deserialize query string: missing field `token`");
  const refused = deployment.checkUploadToken(token);
  if (refused !== null) throw new HttpError(refused.status, refused.code, refused.message);
  const bytes = await readBody(req, MAX_UPLOAD_BODY);
  const digest = /^sha-256=(.+)$/i.exec(req.headers.digest ?? "");
  if (digest) {
    const actual = sha256Base64(bytes);
    if (digest[1].trim() !== actual) {
      throw new HttpError(400, "Sha256Mismatch", `Sha256 mismatch. Expected: ${digest[1].trim()} Actual: ${actual}`);
    }
  }
  const contentType = req.headers["content-type"]?.trim() || null;
  const storageId = await deployment.storeFile(bytes, contentType);
  send(res, 200, { storageId });
}

/** `[start, end]` (inclusive) of a single `Range: bytes=...` within `size`; null if none; "bad" if unsatisfiable. */
function rangeOf(header, size) {
  if (header === undefined) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return "bad";
  let start;
  let end;
  if (match[1] === "") {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  return start > end || start >= size ? "bad" : [start, end];
}

async function handleDownload(deployment, req, res, urlId) {
  const file = await deployment.readFile(urlId);
  if (file === null) throw new HttpError(404, "FileNotFound", "File not found");
  const headers = { "Cache-Control": CACHE_CONTROL, "Accept-Ranges": "bytes" };
  if (file.contentType) headers["Content-Type"] = file.contentType;
  const size = file.bytes.length;
  const range = rangeOf(req.headers.range, size);
  if (range === "bad") {
    res.writeHead(416, { "Content-Range": `bytes */${size}`, "Content-Length": 0 });
    return res.end();
  }
  let body = file.bytes;
  let status = 200;
  if (range === null) {
    headers.Digest = `sha-256=${file.sha256}`;
  } else {
    status = 206;
    body = file.bytes.subarray(range[0], range[1] + 1);
    headers["Content-Range"] = `bytes ${range[0]}-${range[1]}/${size}`;
  }
  headers["Content-Length"] = body.length;
  res.writeHead(status, headers);
  res.end(req.method === "HEAD" ? undefined : body);
}

function route(deployment, adminKey) {
  return async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    const path = url.pathname;
    const method = req.method;
    const call = /^\/api\/(query|mutation|action)$/.exec(path);
    if (call) {
      if (method !== "POST") throw new HttpError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
      return await handleCall(deployment, adminKey, req, res, url, call[1], null);
    }
    if (path.startsWith("/api/run/")) {
      if (method !== "POST") throw new HttpError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
      const parts = path.slice("/api/run/".length).split("/").map(decodeURIComponent);
      if (parts.length < 2 || parts.some((part) => part === "")) {
        throw new HttpError(400, "MissingIdentifier", "Path or function name not provided in path, e.g. /api/run/messages/list");
      }
      const name = parts.pop();
      return await handleCall(deployment, adminKey, req, res, url, null, `${parts.join("/")}:${name}`);
    }
    if (path === "/api/storage/upload") {
      if (method !== "POST") throw new HttpError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
      return await handleUpload(deployment, req, res, url);
    }
    const file = /^\/api\/storage\/([^/]+)$/.exec(path);
    if (file) {
      if (method !== "GET" && method !== "HEAD") throw new HttpError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
      return await handleDownload(deployment, req, res, decodeURIComponent(file[1]));
    }
    throw new HttpError(404, "NotFound", `No route for ${method} ${path}`);
  };
}

// --- main -------------------------------------------------------------------------------------

const options = parseArgs(process.argv.slice(2));
const adminKey = process.env.CONVEX_ADMIN_KEY ?? "";
if (!adminKey) exitWith("CONVEX_ADMIN_KEY must be set to the admin key clients will send");

const deployment = new Deployment({ functionsDir: options.functions, extraFunctionsDir: options.extra });
try {
  await deployment.load();
} catch (error) {
  process.stderr.write(`localconvex: cannot load the functions: ${clip(error?.stack ?? error, 20_000)}\n`);
  process.exit(1);
}

const handle = route(deployment, adminKey);
const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    const known = error instanceof HttpError;
    if (!known) process.stderr.write(`localconvex: ${req.method} ${req.url?.split("?")[0]}: ${clip(error?.stack ?? error)}\n`);
    if (res.headersSent) return res.destroy();
    // A refused body may be half sent: answer, then drop the connection rather than read it all.
    if (known && error.status === 413) res.setHeader("Connection", "close");
    send(res, known ? error.status : 500, {
      code: known ? error.code : "InternalServerError",
      message: known ? error.message : "Your request couldn't be completed. Try again later.",
    });
  });
});
// Longer than clients keep idle connections (httpx: 5 s), so a reused connection is never
// closed by the server just as the client sends on it.
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (options.exitOnStdinClose) {
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}

server.on("error", (error) => {
  process.stderr.write(`localconvex: cannot listen on 127.0.0.1:${options.port}: ${error.message}\n`);
  process.exit(1);
});
server.listen(options.port, "127.0.0.1", () => {
  deployment.baseUrl = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(`${JSON.stringify({ event: "ready", url: deployment.baseUrl })}\n`);
});
