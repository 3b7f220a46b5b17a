import { setImmediate as nextTurn } from 'node:timers/promises';
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { isIP, type Socket } from 'node:net';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import { CkptError } from '../errors.js';
import { abortable } from './abortable.js';
import { Authenticator, type TokenFetch } from './auth.js';
import { describeRequest, isNetworkError, responseError, transportError } from './errors.js';
import { endpointHost, resolveOptions, type RegistryOptions, type ResolvedOptions } from './options.js';
import { isRetryableStatus, parseRetryAfter, retryDelay, sleep } from './retry.js';

/**
 * One registry host: its connection pool (an undici Agent with the host's TLS settings), its
 * authentication state, and `send`, the one way every module talks to it. `send` adds
 * authorisation (only for the registry's own host), retries what may be retried, follows
 * redirects without credentials, and turns unexpected answers into CkptErrors.
 */

export type Response = Dispatcher.ResponseData;

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path below the registry's base URL (`/v2/...`) or an absolute URL (an upload Location). */
  url: string | URL;
  /** Token scopes the request needs (`repository:a/b:pull,push`). */
  scopes: readonly string[];
  headers?: Record<string, string>;
  /** A Buffer can be sent again after a failure or a 401; a stream cannot, so it is never retried. */
  body?: Buffer | Readable;
  /** Statuses that are answers, not errors; the caller reads (or dumps) their bodies. */
  expect: readonly number[];
  /** Retry broken connections and 408/429/5xx (default: when the body can be replayed). */
  retry?: boolean;
  /** Follow 3xx redirects, without `Authorization` (blob downloads from storage). */
  redirect?: boolean;
  signal?: AbortSignal;
  /** The reference named in error messages. */
  subject: string;
}

const MAX_REDIRECTS = 5;
const ERROR_BODY_LIMIT = 64 * 1024;

/** What a server that speaks plain HTTP does with a TLS hello: answers it with text, or drops the connection. */
const NOT_TLS = new Set(['ECONNRESET', 'ERR_SSL_WRONG_VERSION_NUMBER']);

/**
 * Whether a host where plain HTTP is allowed speaks TLS, asked of TLS itself: a handshake that
 * completes, or that the server ends with an alert (a client certificate it wants), means yes,
 * whatever happens next; only an answer in plain text, or a reset before the handshake, means
 * no. Certificates are not checked here: the requests that follow check them. The socket is kept
 * in `sockets`, so that close() ends a probe a silent registry never answers.
 */
function speaksTls(base: URL, sockets: Set<Socket>): Promise<boolean> {
  return new Promise((resolve) => {
    const host = base.hostname.replace(/^\[|\]$/g, '');
    const socket = tlsConnect({ host, port: Number(base.port || 443), servername: isIP(host) ? undefined : host, rejectUnauthorized: false });
    sockets.add(socket);
    const done = (tls: boolean) => {
      socket.destroy();
      sockets.delete(socket);
      resolve(tls);
    };
    socket.setTimeout(10_000, () => done(true));
    socket.once('secureConnect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) => done(!NOT_TLS.has(err.code ?? '')));
    socket.once('close', () => done(true));
  });
}

/**
 * undici's connector, keeping the sockets it opens in `sockets` until they close: an Agent's
 * destroy() leaves a connection still being set up (a TLS handshake a silent registry never
 * answers) alive until its timeout, which holds the process that long after a Ctrl-C.
 */
function trackingConnector(options: buildConnector.BuildOptions, sockets: Set<Socket>): buildConnector.connector {
  // Typed as returning nothing, undici's connector returns the socket it is connecting.
  const connect = buildConnector(options) as (opts: buildConnector.Options, callback: buildConnector.Callback) => Socket;
  return (opts, callback) => {
    const socket = connect(opts, callback);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
}

/**
 * Lets a connection whose response just ended return to the pool. undici reuses a connection only
 * a loop turn later, once it has looked for a close the server sent meanwhile; a request made
 * sooner, as the next one of a sequence is, opens another connection (over a WAN, a TLS handshake).
 */
function freeConnection(): Promise<void> {
  return nextTurn();
}

/** A registry's pool, the URL its requests go to, and whether they carry a client certificate. */
interface Connection {
  base: URL;
  agent: Agent;
  clientCert: boolean;
}

export class RegistryClient {
  /** The registry as the user names it (`docker.io`, `127.0.0.1:5000`). */
  readonly registry: string;
  readonly options: ResolvedOptions;
  /**
   * Whether the registry takes blobs in several PATCHes: `accepted` once one took a second chunk,
   * `refused` once one was refused (GHCR above 4 MiB, Artifact Registry never), after which
   * uploads stream each blob in one PATCH, as docker and containers/image always do.
   */
  chunkedUploads: 'untried' | 'accepted' | 'refused' = 'untried';
  readonly #auth: Authenticator;
  #connection: Promise<Connection> | undefined;
  /** The pool, as soon as it exists: close() destroys it even while the HTTPS probe of a host that may speak plain HTTP still waits. */
  #agent: Agent | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(registry: string, options: RegistryOptions = {}) {
    this.registry = registry;
    this.options = resolveOptions(options);
    this.#auth = new Authenticator(registry, this.options.credentials, this.#fetchToken);
  }

  /** The base URL (`https://host:port`), once the host's settings are known. */
  async baseUrl(): Promise<URL> {
    return (await this.#connect()).base;
  }

  async send(req: RegistryRequest): Promise<Response> {
    // A registry that accepts connections and then says nothing must not hold an abort up.
    const { agent, base, clientCert } = await abortable(this.#connect(), req.signal, req.subject);
    let url = typeof req.url === 'string' && req.url.startsWith('/') ? new URL(req.url, base) : new URL(req.url);
    const replayable = req.body === undefined || Buffer.isBuffer(req.body);
    const retry = req.retry ?? replayable;
    const policy = this.options.retry;
    let attempt = 0;
    let authRetried = false;
    let redirects = 0;
    let method = req.method;
    for (;;) {
      attempt++;
      // Credentials go to the registry's own host only (a redirect within it keeps them, as Go's
      // client does): never to storage on another host, never to an upload Location elsewhere.
      const sameHost = url.host === base.host && url.protocol === base.protocol;
      const authorization = sameHost ? await this.#auth.authorization(req.scopes, req.signal) : undefined;
      const headers: Record<string, string> = { 'user-agent': this.options.userAgent, ...req.headers };
      if (authorization) headers.authorization = authorization;
      let res: Response;
      try {
        await freeConnection();
        res = await request(url, {
          dispatcher: agent,
          method,
          headers,
          body: redirects === 0 ? (req.body ?? null) : null,
          signal: req.signal,
        });
      } catch (err) {
        if (retry && isNetworkError(err) && attempt < policy.attempts && !req.signal?.aborted) {
          await sleep(retryDelay(attempt, policy), req.signal, req.subject);
          continue;
        }
        const tls = url.protocol === 'https:' ? { clientCert } : undefined;
        throw transportError(err, describeRequest(method, url), req.subject, req.signal, tls);
      }
      const status = res.statusCode;
      if (status === 401 && sameHost) {
        await res.body.dump();
        const challenge = res.headers['www-authenticate'];
        if (replayable && !authRetried && (await this.#auth.challenged(challenge, req.scopes, authorization, req.signal))) {
          authRetried = true;
          attempt--;
          continue;
        }
        throw await this.#auth.rejection(challenge, describeRequest(method, url), req.subject, req.signal);
      }
      if (req.redirect && [301, 302, 303, 307, 308].includes(status) && typeof res.headers.location === 'string') {
        await res.body.dump();
        if (++redirects > MAX_REDIRECTS) {
          throw new CkptError('REGISTRY_ERROR', `${describeRequest(method, url)}: too many redirects`, { subject: req.subject });
        }
        url = new URL(res.headers.location, url);
        if (status === 303) method = 'GET';
        attempt = 0;
        continue;
      }
      if (req.expect.includes(status)) return res;
      if (retry && isRetryableStatus(status) && attempt < policy.attempts) {
        await res.body.dump();
        await sleep(retryDelay(attempt, policy, parseRetryAfter(res.headers['retry-after'])), req.signal, req.subject);
        continue;
      }
      throw await statusError(res, method, url, req.subject);
    }
  }

  /** Closes every pooled connection. */
  async close(): Promise<void> {
    const connection = this.#connection;
    const agent = this.#agent;
    this.#connection = undefined;
    this.#agent = undefined;
    // Not close(): it would wait for a connection a silent registry never completes (30 s).
    await agent?.destroy();
    for (const socket of this.#sockets) socket.destroy();
    await connection?.catch(() => undefined);
  }

  #connect(): Promise<Connection> {
    if (this.#connection) return this.#connection;
    const connection = this.options.hostSettings(this.registry).then(async (settings) => {
      // Closed while the host's settings were read: no pool that nothing would destroy.
      if (this.#connection !== connection) throw new CkptError('ABORTED', 'the connection was closed', { subject: this.registry });
      let base = new URL(`${settings.scheme}://${endpointHost(this.registry)}`);
      // Extra CAs are added to the system's, not put in their place: blob redirects may lead to
      // storage with a public certificate.
      const ca = settings.ca?.length ? [...rootCertificates, ...settings.ca.map((c) => c.toString())] : undefined;
      const tls = {
        ca,
        // A CA given is trusted as given, an issuing CA without its root too, as Go's pool (Podman, skopeo) trusts it.
        allowPartialTrustChain: ca !== undefined,
        rejectUnauthorized: this.options.tlsVerify && !settings.insecure,
        ...(settings.clientCert ? { cert: settings.clientCert.cert, key: settings.clientCert.key } : {}),
      };
      const agent = new Agent({ connect: trackingConnector({ ...tls, timeout: 30_000 }, this.#sockets), bodyTimeout: this.options.bodyTimeoutMs });
      this.#agent = agent;
      if (settings.httpFallback && !(await speaksTls(base, this.#sockets))) base = new URL(`http://${base.host}`);
      // Whether certs.d gave a client certificate changes what a refused TLS connection means.
      return { base, agent, clientCert: settings.clientCert !== undefined };
    });
    this.#connection = connection;
    return connection;
  }

  /** Token requests go through the same pool and TLS settings, with retries but no registry auth. */
  readonly #fetchToken: TokenFetch = async (url, init) => {
    const { agent } = await abortable(this.#connect(), init.signal, this.registry);
    const policy = this.options.retry;
    for (let attempt = 1; ; attempt++) {
      try {
        await freeConnection();
        const res = await request(url, {
          dispatcher: agent,
          method: init.method,
          headers: { 'user-agent': this.options.userAgent, ...init.headers },
          body: init.body ?? null,
          signal: init.signal,
        });
        if (isRetryableStatus(res.statusCode) && attempt < policy.attempts) {
          await res.body.dump();
          await sleep(retryDelay(attempt, policy, parseRetryAfter(res.headers['retry-after'])), init.signal, this.registry);
          continue;
        }
        return { status: res.statusCode, text: await readText(res, ERROR_BODY_LIMIT) };
      } catch (err) {
        if (!isNetworkError(err) || attempt >= policy.attempts || init.signal?.aborted) throw err;
        await sleep(retryDelay(attempt, policy), init.signal, this.registry);
      }
    }
  };
}

/** The error an answer's status means, with what its error document says. */
export async function statusError(res: Response, method: string, url: URL, subject: string): Promise<CkptError> {
  // The status is the answer; an error document cut short only loses its details.
  const details = await readText(res, ERROR_BODY_LIMIT).catch(() => '');
  return responseError(res.statusCode, details, describeRequest(method, url), subject);
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
export async function readText(res: Response, limit: number): Promise<string> {
  return (await readBytes(res.body, limit, false)).toString('utf8');
}

/**
 * Reads a whole stream into memory, for manifests and error documents only; fails (or, with
 * `fail` false, stops) past `limit` so that a hostile registry cannot exhaust memory.
 */
export async function readBytes(body: Readable, limit: number, fail = true, subject = ''): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      if (fail) throw new CkptError('REGISTRY_ERROR', `content larger than ${limit} bytes`, { subject });
      parts.push(chunk.subarray(0, chunk.length - (size - limit)));
      break;
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** The first value of a response header. */
export function header(res: Response, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
