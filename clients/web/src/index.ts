/**
 * The Reel Maker frontend's `reconcileProject(projectId)`, pointed at reel-reconciler's
 * endpoint: the same path, method and JSON as the app's own route, a Firebase ID token
 * instead of the session cookie, and every refusal turned into an error a page can branch on.
 *
 * No runtime dependencies: it needs only `fetch` (browsers, Node 18+).
 */

/** What a reconcile did; `corrected` means the project document was rewritten. */
export type ReconcileAction =
  | "no_change"
  | "corrected"
  | "drift"
  | "skipped"
  | "conflict"
  | "error";

/** Why a project drifted (a fixed, small set). */
export type DriftKind =
  | "missing_clip"
  | "restored_clip"
  | "status_mismatch"
  | "stuck_generating"
  | "stuck_stitching"
  | "stitched_missing"
  | "restored_stitched"
  | "stale_job"
  | "invalid_document"
  | "flapping";

/**
 * The reconciler's report: the app's keys first (`projectId` to `action` are the fields its
 * frontend already read), then what the reconciler adds. Optional keys are left out when
 * they do not apply.
 */
export interface ReconcileReport {
  projectId: string;
  originalStatus: string | null;
  correctedStatus: string | null;
  claimedClips: number;
  verifiedClips: number;
  missingClips: string[];
  restoredClips: string[];
  action: ReconcileAction;
  driftKinds: DriftKind[];
  extraClaims: string[];
  staleJobs: string[];
  recoveredVideoSeconds: number;
  attempts: number;
  /** Why nothing was written (`skipped`): a live job, an opt-out, a held project. */
  reason?: string | null;
  /** What went wrong (`error`). */
  error?: string | null;
  /** A service could not be reached (`error`). */
  unreachable?: boolean | null;
  stitchedMissing?: string | null;
  restoredStitched?: string | null;
  healSeconds?: number | null;
  retryAfter?: number | null;
  /** A flapping project is left alone until then (ISO 8601). */
  heldUntil?: string | null;
}

/** The answer of a successful call, as the app's route answered. */
export interface ReconcileResponse {
  success: true;
  report: ReconcileReport;
}

export interface ReconcileOptions {
  /** Where the reconciler's endpoint is, e.g. `https://reconciler.example.com` (a path
   * prefix is kept: `https://example.com/reconciler`). */
  baseUrl: string;
  /** The signed-in user's current Firebase ID token: `() => auth.currentUser!.getIdToken()`.
   * Called once per request, so a token Firebase refreshed is the one sent. */
  getIdToken: () => Promise<string>;
  /** Another `fetch` (tests, instrumentation); the global one by default. */
  fetch?: typeof fetch;
  /** Cancels the call (a project closed before its reconcile answered); the promise then
   * rejects with the `AbortError` fetch raises. */
  signal?: AbortSignal;
}

/** The wait used when a 429 or 503 came without a readable `Retry-After`. */
export const DEFAULT_RETRY_AFTER_MS = 5_000;

/**
 * Any failed call. `status` is the HTTP status (0 when no answer could be read: the network,
 * or a browser blocking a cross-origin answer), `code` the endpoint's error code (`network`,
 * `bad_response` or `http_<status>` when the answer carried none).
 */
export class ReconcileError extends Error {
  override name = "ReconcileError";
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
    this.code = code;
  }
}

/** 401: the token was missing, expired or refused; sign the user in again. */
export class UnauthenticatedError extends ReconcileError {
  override name = "UnauthenticatedError";
}

/** 404: no such project, or another user's (the endpoint does not say which). */
export class NotFoundError extends ReconcileError {
  override name = "NotFoundError";
}

/** A refusal that asks to be tried again later: wait `retryAfterMs` first. */
export class RetryableError extends ReconcileError {
  override name = "RetryableError";
  readonly retryAfterMs: number;

  constructor(status: number, code: string, message: string, retryAfterMs: number) {
    super(status, code, message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** 429: this user (or, before login, this address) called too often. */
export class RateLimitedError extends RetryableError {
  override name = "RateLimitedError";
}

/** 503: a service the reconciler needs is down, or this replica is a standby; nothing was
 * written. */
export class UnavailableError extends RetryableError {
  override name = "UnavailableError";
}

/** Reconcile one project now, as the app's frontend did when a project opened. */
export async function reconcileProject(
  projectId: string,
  options: ReconcileOptions,
): Promise<ReconcileResponse> {
  if (typeof projectId !== "string" || projectId === "") {
    throw new TypeError("reconcileProject: projectId must be a non-empty string");
  }
  const url = endpointUrl(options.baseUrl, projectId);
  const token = await options.getIdToken();
  const send = options.fetch ?? globalThis.fetch;
  const init: RequestInit = {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    mode: "cors",
    credentials: "omit",
    cache: "no-store",
  };
  if (options.signal !== undefined) {
    init.signal = options.signal;
  }
  let response: Response;
  try {
    response = await send(url, init);
  } catch (error) {
    if (isAbort(error, options.signal)) {
      throw error;
    }
    throw new ReconcileError(
      0,
      "network",
      "the reconciler could not be reached (network, or a cross-origin call the browser " +
        "blocked: is this page's origin in --api-cors-origin?)",
      { cause: error },
    );
  }
  const body = await readJson(response, options.signal);
  if (response.ok) {
    if (isSuccess(body)) {
      return body;
    }
    throw new ReconcileError(response.status, "bad_response",
      "the reconciler answered without a report");
  }
  throw refusal(response, body);
}

function endpointUrl(baseUrl: string, projectId: string): string {
  let base: URL;
  try {
    base = new URL(baseUrl);
  } catch {
    throw new TypeError(`reconcileProject: baseUrl ${JSON.stringify(baseUrl)} is not an absolute URL`);
  }
  const prefix = base.pathname.replace(/\/+$/, "");
  base.pathname = `${prefix}/api/reel/projects/${encodeURIComponent(projectId)}/reconcile`;
  base.search = "";
  base.hash = "";
  return base.toString();
}

function isAbort(error: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true ||
    (error instanceof Error && error.name === "AbortError");
}

/** The body as JSON, or undefined when it is not JSON (a proxy's HTML page). */
async function readJson(response: Response, signal: AbortSignal | undefined): Promise<unknown> {
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    if (isAbort(error, signal)) {
      throw error;
    }
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isSuccess(body: unknown): body is ReconcileResponse {
  return isRecord(body) && body["success"] === true && isRecord(body["report"]) &&
    typeof body["report"]["projectId"] === "string" &&
    typeof body["report"]["action"] === "string";
}

function refusal(response: Response, body: unknown): ReconcileError {
  const status = response.status;
  let code = `http_${status}`;
  let message = `the reconciler answered ${status}${response.statusText ? ` ${response.statusText}` : ""}`;
  if (isRecord(body) && isRecord(body["error"])) {
    const error = body["error"];
    if (typeof error["code"] === "string") {
      code = error["code"];
    }
    if (typeof error["message"] === "string") {
      message = error["message"];
    }
  }
  switch (status) {
    case 401:
      return new UnauthenticatedError(status, code, message);
    case 404:
      return new NotFoundError(status, code, message);
    case 429:
      return new RateLimitedError(status, code, message, retryAfterMs(response));
    case 503:
      return new UnavailableError(status, code, message, retryAfterMs(response));
    default:
      return new ReconcileError(status, code, message);
  }
}

/** `Retry-After` in milliseconds: delta-seconds or an HTTP date (RFC 9110, 10.2.3). */
export function retryAfterMs(response: Response, now: number = Date.now()): number {
  const header = response.headers.get("Retry-After")?.trim();
  if (header === undefined || header === "") {
    return DEFAULT_RETRY_AFTER_MS;
  }
  if (/^\d+$/.test(header)) {
    return Number(header) * 1000;
  }
  const date = Date.parse(header);
  if (Number.isNaN(date)) {
    return DEFAULT_RETRY_AFTER_MS;
  }
  return Math.max(0, date - now);
}
