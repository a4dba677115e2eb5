// The client against a real HTTP server on loopback that answers as the endpoint does; the
// browser test (tests/browser) runs it against the reconciler itself.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";

import {
  DEFAULT_RETRY_AFTER_MS,
  NotFoundError,
  RateLimitedError,
  ReconcileError,
  reconcileProject,
  UnauthenticatedError,
  UnavailableError,
} from "../src/index.js";

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

type Answer = (req: IncomingMessage, res: ServerResponse) => void;

const report = {
  projectId: "p-1",
  originalStatus: "generating",
  correctedStatus: "ready",
  claimedClips: 0,
  verifiedClips: 2,
  missingClips: [],
  restoredClips: ["reel-maker/u/p-1/raw/j/prompt-00/clip.mp4", "reel-maker/u/p-1/raw/j/prompt-01/clip.mp4"],
  action: "corrected",
  driftKinds: ["restored_clip", "stuck_generating"],
  extraClaims: [],
  staleJobs: [],
  recoveredVideoSeconds: 16,
  attempts: 1,
};

function json(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  return (_req, res) => {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
}

function refusal(status: number, code: string, message: string,
  headers: Record<string, string> = {}): Answer {
  return json(status, { success: false, error: { code, message } }, headers);
}

let server: Server;
let base: string;
let seen: Seen[] = [];
let answer: Answer = json(200, { success: true, report });

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => { body += chunk.toString(); });
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body });
      answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen = [];
  answer = json(200, { success: true, report });
});

const token = async (): Promise<string> => "id-token-1";

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("the call succeeded");
}

describe("reconcileProject", () => {
  it("POSTs the seed's path with the user's token and returns the report", async () => {
    const answer = await reconcileProject("p-1", { baseUrl: base, getIdToken: token });
    assert.deepEqual(answer, { success: true, report });
    assert.equal(answer.report.action, "corrected");
    assert.deepEqual(seen, [{ method: "POST", url: "/api/reel/projects/p-1/reconcile",
      authorization: "Bearer id-token-1", body: "" }]);
  });

  it("asks for the token on every call, so a refreshed one is sent", async () => {
    let n = 0;
    const fresh = async (): Promise<string> => `token-${++n}`;
    await reconcileProject("p-1", { baseUrl: base, getIdToken: fresh });
    await reconcileProject("p-1", { baseUrl: base, getIdToken: fresh });
    assert.deepEqual(seen.map((s) => s.authorization), ["Bearer token-1", "Bearer token-2"]);
  });

  it("escapes the id and keeps a base path", async () => {
    await reconcileProject("a b?c#d", { baseUrl: `${base}/reconciler/`, getIdToken: token });
    assert.equal(seen[0]?.url, "/reconciler/api/reel/projects/a%20b%3Fc%23d/reconcile");
  });

  it("maps 401 to UnauthenticatedError", async () => {
    answer = refusal(401, "unauthenticated", "no valid credentials");
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof UnauthenticatedError);
    assert.ok(error instanceof ReconcileError);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthenticated");
    assert.equal(error.message, "no valid credentials");
  });

  it("maps 404 to NotFoundError", async () => {
    answer = refusal(404, "not_found", "no such project");
    const error = await rejection(reconcileProject("p-x", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.code, "not_found");
  });

  it("maps 429 to RateLimitedError with Retry-After in seconds", async () => {
    answer = refusal(429, "rate_limited", "too many requests", { "Retry-After": "17" });
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.retryAfterMs, 17_000);
    assert.equal(error.code, "rate_limited");
  });

  it("maps 503 to UnavailableError with Retry-After as an HTTP date", async () => {
    const when = new Date(Date.now() + 120_000).toUTCString();
    answer = refusal(503, "unavailable", "try again later", { "Retry-After": when });
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof UnavailableError);
    assert.ok(error.retryAfterMs > 100_000 && error.retryAfterMs <= 120_000, String(error.retryAfterMs));
  });

  it("waits the default when a 503 carries no Retry-After", async () => {
    answer = refusal(503, "unavailable", "standby");
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof UnavailableError);
    assert.equal(error.retryAfterMs, DEFAULT_RETRY_AFTER_MS);
  });

  it("keeps other codes as a ReconcileError with the endpoint's code", async () => {
    answer = refusal(403, "forbidden", "not allowed");
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof ReconcileError);
    assert.ok(!(error instanceof UnauthenticatedError) && !(error instanceof NotFoundError));
    assert.equal(error.status, 403);
    assert.equal(error.code, "forbidden");
  });

  it("names the status when the body is not the endpoint's JSON", async () => {
    answer = (_req, res) => {
      res.writeHead(502, "Bad Gateway", { "Content-Type": "text/html" });
      res.end("<html>bad gateway</html>");
    };
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof ReconcileError);
    assert.equal(error.code, "http_502");
    assert.equal(error.message, "the reconciler answered 502 Bad Gateway");
  });

  it("refuses a 200 without a report", async () => {
    answer = json(200, { success: true });
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: token }));
    assert.ok(error instanceof ReconcileError);
    assert.equal(error.code, "bad_response");
  });

  it("turns an unreachable server into a network error", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await rejection(reconcileProject("p-1",
      { baseUrl: `http://127.0.0.1:${port}`, getIdToken: token }));
    assert.ok(error instanceof ReconcileError);
    assert.equal(error.status, 0);
    assert.equal(error.code, "network");
    assert.ok(error.cause instanceof Error);
  });

  it("rejects with fetch's AbortError when the signal aborts", async () => {
    answer = () => { /* never answers */ };
    const controller = new AbortController();
    const call = reconcileProject("p-1", { baseUrl: base, getIdToken: token, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const error = await rejection(call);
    assert.ok(!(error instanceof ReconcileError));
    assert.equal((error as Error).name, "AbortError");
  });

  it("uses the fetch it is given", async () => {
    const urls: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      urls.push(String(input));
      return fetch(input, init);
    };
    await reconcileProject("p-1", { baseUrl: base, getIdToken: token, fetch: recording });
    assert.deepEqual(urls, [`${base}/api/reel/projects/p-1/reconcile`]);
  });

  it("sends nothing when the token cannot be had", async () => {
    const signedOut = async (): Promise<string> => { throw new Error("no user signed in"); };
    const error = await rejection(reconcileProject("p-1", { baseUrl: base, getIdToken: signedOut }));
    assert.equal((error as Error).message, "no user signed in");
    assert.deepEqual(seen, []);
  });

  it("refuses bad input in one line before any request", async () => {
    const empty = await rejection(reconcileProject("", { baseUrl: base, getIdToken: token }));
    assert.ok(empty instanceof TypeError);
    assert.equal(empty.message, "reconcileProject: projectId must be a non-empty string");
    const relative = await rejection(reconcileProject("p-1", { baseUrl: "/api", getIdToken: token }));
    assert.ok(relative instanceof TypeError);
    assert.equal(relative.message, 'reconcileProject: baseUrl "/api" is not an absolute URL');
    assert.deepEqual(seen, []);
  });
});
