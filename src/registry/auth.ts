import { z } from 'zod';
import { CkptError } from '../errors.js';
import { abortable } from './abortable.js';
import { parseChallenges, type Challenge } from './challenge.js';
import { describeRequest, redact, responseError, transportError } from './errors.js';
import type { Credential } from './options.js';

/**
 * Authentication against one registry host, shared by every repository and every concurrent
 * transfer on it. The registry says what it wants in a 401 challenge; from then on each request
 * is authorised up front: Basic with the stored password, or a bearer token fetched from the
 * challenge's realm and cached per scope set until shortly before it expires.
 */

/** How the token realm is reached; supplied by the client so that it uses the same TLS settings. */
export type TokenFetch = (
  url: URL,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<{ status: number; text: string }>;

const TokenResponseSchema = z.object({
  token: z.string().min(1).optional(),
  access_token: z.string().min(1).optional(),
  expires_in: z.number().positive().optional(),
});

/** A token request that takes longer has failed. */
const TOKEN_TIMEOUT_MS = 60_000;

/** Lifetime a token has when the server does not say (distribution's token spec). */
const DEFAULT_EXPIRES_IN_S = 60;

interface CachedToken {
  value: string;
  /** When to stop using it: a little before its announced expiry, to absorb latency and skew. */
  renewAt: number;
}

export class Authenticator {
  readonly #registry: string;
  readonly #findCredential: (registry: string, signal: AbortSignal) => Promise<Credential | undefined>;
  readonly #fetchToken: TokenFetch;
  #scheme: 'basic' | 'bearer' | undefined;
  #bearer: { realm: URL; service?: string } | undefined;
  /** Promises, so that concurrent requests for the same scopes share one token fetch. */
  readonly #tokens = new Map<string, Promise<CachedToken>>();
  /** The header of the token last fetched per scope key, to tell a denial from an expiry. */
  readonly #latest = new Map<string, string>();
  #credentialPromise: Promise<Credential | undefined> | undefined;

  constructor(registry: string, credential: (registry: string, signal: AbortSignal) => Promise<Credential | undefined>, fetchToken: TokenFetch) {
    this.#registry = registry;
    this.#findCredential = credential;
    this.#fetchToken = fetchToken;
  }

  /**
   * The registry's credential, looked up once for every request (a credential helper may prompt
   * or hang): shared, so no one asker's signal ends it, only the token timeout; each asker stops
   * waiting when its own signal fires. A failed lookup is tried again by the next.
   */
  #credential(signal?: AbortSignal): Promise<Credential | undefined> {
    if (!this.#credentialPromise) {
      const lookup = this.#findCredential(this.#registry, AbortSignal.timeout(TOKEN_TIMEOUT_MS));
      this.#credentialPromise = lookup;
      lookup.catch(() => {
        if (this.#credentialPromise === lookup) this.#credentialPromise = undefined;
      });
    }
    return abortable(this.#credentialPromise, signal, this.#registry, 'aborted while looking up credentials');
  }

  /** The `Authorization` value for a request needing `scopes`, or undefined before any challenge. */
  async authorization(scopes: readonly string[], signal?: AbortSignal): Promise<string | undefined> {
    if (this.#scheme === 'basic') return basicHeader(await this.#credential(signal));
    if (this.#scheme !== 'bearer') return undefined;
    const key = scopeKey(scopes);
    let entry = this.#tokens.get(key);
    if (entry) {
      const token = await entry.catch(() => undefined);
      if (token && Date.now() < token.renewAt) return `Bearer ${token.value}`;
      // Expired, or the shared fetch failed: only the first caller to notice replaces it.
      if (this.#tokens.get(key) === entry) this.#tokens.delete(key);
    }
    entry = this.#tokens.get(key);
    if (!entry) {
      // Shared by every request waiting for these scopes, so no single caller's signal may cancel it.
      entry = this.#requestToken(scopes, AbortSignal.timeout(TOKEN_TIMEOUT_MS));
      this.#tokens.set(key, entry);
      entry.catch(() => this.#tokens.get(key) === entry && this.#tokens.delete(key));
    }
    return `Bearer ${(await abortable(entry, signal, this.#registry, 'aborted while waiting for a token')).value}`;
  }

  /**
   * Learns from a 401. Returns true when a new attempt with fresh authorisation may succeed; false
   * when it cannot (no credentials for Basic, the same credentials already refused).
   */
  async challenged(header: string | string[] | undefined, scopes: readonly string[], sent: string | undefined, signal?: AbortSignal): Promise<boolean> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (bearer) {
      if (sent?.startsWith('Bearer ')) {
        // The token we sent was refused: expired early or revoked. Forget it and fetch another,
        // unless the registry says the scope itself is not granted.
        if (bearer.params.error === 'insufficient_scope' && !this.#tokenWasStale(scopes, sent)) return false;
        this.#forget(scopes, sent);
      }
      this.#scheme = 'bearer';
      this.#bearer = bearerRealm(bearer, this.#registry);
      return true;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      if (sent?.startsWith('Basic ')) return false;
      const cred = await this.#credential(signal);
      if (!cred?.username || cred.password === undefined) return false;
      this.#scheme = 'basic';
      return true;
    }
    return false;
  }

  /** The error for a 401 that `challenged` could not answer. */
  async rejection(header: string | string[] | undefined, request: string, subject: string, signal?: AbortSignal): Promise<CkptError> {
    const challenge = parseChallenges(header).find((c) => c.scheme === 'bearer' || c.scheme === 'basic');
    if (challenge?.params.error === 'insufficient_scope') {
      const scope = challenge.params.scope ? ` (${challenge.params.scope})` : '';
      return new CkptError('DENIED', `${request}: access denied${scope}`, { subject });
    }
    const cred = await this.#credential(signal);
    const why = cred ? 'the registry rejected the credentials' : `authentication required and no credentials are stored for ${this.#registry}`;
    return new CkptError('UNAUTHORIZED', `${request}: ${why}`, { subject });
  }

  #tokenWasStale(scopes: readonly string[], sent: string): boolean {
    // A refusal of the newest token for exactly these scopes means "denied"; of an older one, "expired".
    return this.#latest.get(scopeKey(scopes)) !== sent;
  }

  #forget(scopes: readonly string[], sent: string): void {
    const key = scopeKey(scopes);
    // Only the newest token is dropped: another request may already have replaced a stale one.
    if (this.#latest.get(key) !== sent) return;
    this.#latest.delete(key);
    this.#tokens.delete(key);
  }

  async #requestToken(scopes: readonly string[], signal?: AbortSignal): Promise<CachedToken> {
    const bearer = this.#bearer;
    if (!bearer) throw new Error('bearer token requested before any challenge');
    const cred = await this.#credential(signal);
    const url = new URL(bearer.realm);
    let init: Parameters<TokenFetch>[1];
    if (cred?.identityToken) {
      // OAuth2 refresh-token grant, how Docker and Podman use an identity token.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: 'ckpt' });
      if (bearer.service) form.set('service', bearer.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), signal };
    } else {
      if (bearer.service) url.searchParams.set('service', bearer.service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      const auth = basicHeader(cred);
      init = { method: 'GET', headers: auth ? { authorization: auth } : {}, signal };
    }
    const request = describeRequest(init.method, url);
    const subject = this.#registry;
    let reply: { status: number; text: string };
    try {
      reply = await this.#fetchToken(url, init);
    } catch (err) {
      // Without the signal: the only one here is the timeout, which is a network failure, not an abort.
      throw transportError(err, `token request ${request}`, subject);
    }
    if (reply.status === 401) {
      throw new CkptError('UNAUTHORIZED', `token request ${request}: the token server rejected the credentials`, { subject });
    }
    if (reply.status !== 200) throw responseError(reply.status, reply.text, `token request ${request}`, subject);
    const fetchedAt = Date.now();
    let parsed: z.infer<typeof TokenResponseSchema>;
    try {
      parsed = TokenResponseSchema.parse(JSON.parse(reply.text));
    } catch {
      throw new CkptError('REGISTRY_ERROR', redact(`token request ${request}: the reply is not a token`), { subject });
    }
    const value = parsed.token ?? parsed.access_token;
    if (!value) throw new CkptError('REGISTRY_ERROR', `token request ${request}: the reply holds no token`, { subject });
    const lifetimeMs = (parsed.expires_in ?? DEFAULT_EXPIRES_IN_S) * 1000;
    this.#latest.set(scopeKey(scopes), `Bearer ${value}`);
    return { value, renewAt: fetchedAt + lifetimeMs - Math.min(10_000, lifetimeMs / 5) };
  }
}

function scopeKey(scopes: readonly string[]): string {
  return [...scopes].sort().join(' ');
}

function basicHeader(cred: Credential | undefined): string | undefined {
  if (!cred?.username || cred.password === undefined) return undefined;
  return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
}

function bearerRealm(challenge: Challenge, registry: string): { realm: URL; service?: string } {
  let realm: URL;
  try {
    realm = new URL(challenge.params.realm ?? '');
  } catch {
    throw new CkptError('REGISTRY_ERROR', 'the registry announced a token realm that is not a URL', { subject: registry });
  }
  if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
    throw new CkptError('REGISTRY_ERROR', `the registry announced a token realm with scheme ${realm.protocol}`, { subject: registry });
  }
  return { realm, service: challenge.params.service };
}
