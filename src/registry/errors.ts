import { CkptError, type ErrorCode, isAbortError } from '../errors.js';

/**
 * Turns distribution-spec failures into CkptErrors. Messages name the request (method and path,
 * never the query: upload state and pre-signed storage URLs live there) and the registry's own
 * error codes, and pass through `redact` so that no credential can leak into them.
 */

export interface DistributionError {
  code: string;
  message?: string;
  detail?: unknown;
}

/** Parses `{"errors":[{code,message,detail}]}`; anything else gives an empty list. */
export function parseErrorBody(text: string): DistributionError[] {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || !('errors' in value) || !Array.isArray(value.errors)) return [];
    return value.errors
      .filter((e): e is { code: unknown; message?: unknown } => typeof e === 'object' && e !== null && 'code' in e)
      .map((e) => ({ code: String(e.code), message: typeof e.message === 'string' ? e.message : undefined }));
  } catch {
    return [];
  }
}

const SECRET_PATTERNS: [RegExp, string][] = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, '$1 <redacted>'],
  // JWTs, wherever they appear.
  [/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, '<redacted>'],
  // Form or query fields, and JSON members, named like secrets.
  [/\b((?:access_|refresh_|id_)?token|password|secret)=[^\s&"',}]+/gi, '$1=<redacted>'],
  [/"((?:access_|refresh_|id_)?token|password|secret)"\s*:\s*"[^"]*"/gi, '"$1": "<redacted>"'],
  // Credentials in a URL (`https://user:password@host`).
  [/\/\/[^/\s:@]+:[^/\s@]+@/g, '//[redacted]@'],
  // A signed storage URL a blob redirect went to, quoted back by the storage (S3, GCS, Azure SAS, CloudFront).
  [/\b(X-(?:Amz|Goog)-(?:Signature|Credential|Security-Token)|Signature|sig|Key-Pair-Id|Policy)=[^\s&"'<>]+/gi, '$1=<redacted>'],
];

/** Removes anything that looks like a credential from a message. */
export function redact(text: string): string {
  return SECRET_PATTERNS.reduce((out, [re, replacement]) => out.replace(re, replacement), text);
}

/** `GET /v2/repo/blobs/sha256:...`: what a message may say about a request. */
export function describeRequest(method: string, url: URL | string): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  return `${method} ${u.host}${u.pathname}`;
}

const STATUS_CODES: Record<number, ErrorCode> = {
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'NOT_FOUND',
};

const REGISTRY_CODES: Record<string, ErrorCode> = {
  UNAUTHORIZED: 'UNAUTHORIZED',
  DENIED: 'DENIED',
  NAME_UNKNOWN: 'NOT_FOUND',
  MANIFEST_UNKNOWN: 'NOT_FOUND',
  BLOB_UNKNOWN: 'NOT_FOUND',
  BLOB_UPLOAD_UNKNOWN: 'NOT_FOUND',
  DIGEST_INVALID: 'DIGEST_MISMATCH',
  SIZE_INVALID: 'SIZE_MISMATCH',
};

/** The CkptError for a response that is not what the request expected. */
export function responseError(status: number, bodyText: string, request: string, subject: string): CkptError {
  const errors = parseErrorBody(bodyText);
  const first = errors[0];
  const code: ErrorCode =
    STATUS_CODES[status] ?? (first && REGISTRY_CODES[first.code]) ?? 'REGISTRY_ERROR';
  const said = errors.map((e) => (e.message ? `${e.code} (${e.message})` : e.code)).join(', ');
  const why = said || plainText(bodyText) || (status === 404 ? 'not found' : status === 401 ? 'authentication required' : 'unexpected response');
  return new CkptError(code, redact(`${request}: HTTP ${status}: ${why}`), { subject });
}

/**
 * The first line of an answer that is short plain text (Go's "Client sent an HTTP request to an
 * HTTPS server."), not an HTML page or a JSON document: it says more than the status alone.
 */
function plainText(body: string): string | undefined {
  const line = body.trim().split('\n')[0]?.trim() ?? '';
  return line && line.length <= 200 && !/^[<{[]/.test(line) ? line : undefined;
}

/** Error codes of undici and Node's sockets that mean the connection broke, not the request. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
  }
  return undefined;
}

export function isNetworkError(err: unknown): boolean {
  return errorCode(err) !== undefined;
}

/**
 * What a server that wants a client certificate, and got none, does: an alert in the TLS 1.2
 * handshake; in TLS 1.3, after it, a close undici reports as the other side closing.
 */
const REFUSED_HANDSHAKE = new Set(['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED']);

/**
 * Wraps a thrown transport error as NETWORK (or ABORTED); CkptErrors pass through. `tls`: the
 * request went over HTTPS, with or without a client certificate, which says what a close means.
 */
export function transportError(err: unknown, request: string, subject: string, signal?: AbortSignal, tls?: { clientCert: boolean }): CkptError {
  if (err instanceof CkptError) return err;
  if (signal?.aborted || isAbortError(err)) return new CkptError('ABORTED', `${request}: aborted`, { subject, cause: err });
  const code = errorCode(err) ?? ((err as NodeJS.ErrnoException | undefined)?.code ?? 'error');
  const wantsCert = (does: string) => (tls && !tls.clientCert ? ` (a registry that wants a client certificate ${does}: certs.d/HOST:PORT/NAME.cert and NAME.key give one)` : '');
  // OpenSSL's own text names its source files and no remedy.
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    const why = 'the other end answered in plain text, not TLS (if the registry serves plain HTTP: --plain-http or the option plainHttp, or insecure = true in registries.conf)';
    return new CkptError('NETWORK', redact(`${request}: ${why}`), { subject, cause: err });
  }
  if (REFUSED_HANDSHAKE.has(code)) {
    return new CkptError('NETWORK', redact(`${request}: the registry refused the TLS handshake (${code})${wantsCert('does so')}`), { subject, cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  const hint = code === 'UND_ERR_SOCKET' ? wantsCert('closes the connection so') : '';
  return new CkptError('NETWORK', redact(`${request}: ${code}: ${message}${hint}`), { subject, cause: err });
}
