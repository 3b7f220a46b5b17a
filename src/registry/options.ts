/**
 * Options of a registry client, normalised once: every module below reads the filled-in
 * `ResolvedOptions`, never the caller's object.
 */

import { CkptError } from '../errors.js';
import type { Credential } from './credentials.js';
import type { HostSettings } from './hosts.js';

/** The shapes `credentials.ts` (findCredential) and `hosts.ts` (hostSettings) produce, plugged in below. */
export type { Credential, HostSettings };

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** First backoff delay; doubles per attempt, with full jitter. */
  minDelayMs: number;
  maxDelayMs: number;
  /** A longer `Retry-After` is cut to this, so a hostile registry cannot park us for hours. */
  maxRetryAfterMs: number;
}

export interface RegistryOptions {
  /**
   * Looked up once per registry, with the registry as the user names it (`docker.io`, `host:5000`);
   * `signal` ends a lookup that takes too long (60 s) or whose command was aborted.
   */
  credentials?: (registry: string, signal: AbortSignal) => Promise<Credential | undefined>;
  /** Decides scheme and CAs per registry (certs.d, registries.conf); overrides `plainHttp` and `ca`. */
  hostSettings?: (registry: string) => Promise<HostSettings>;
  /** Extra CAs (PEM) for TLS. */
  ca?: Buffer[];
  /** Talk plain HTTP. Only when the user said so. */
  plainHttp?: boolean;
  /** Verify TLS certificates (default true). */
  tlsVerify?: boolean;
  retry?: Partial<RetryPolicy>;
  userAgent?: string;
  /**
   * Size of the chunks of a streamed upload, and so the memory one upload holds (two chunks: one
   * in flight, kept until acknowledged for resumption, and one read ahead). Default 8 MiB.
   */
  chunkSize?: number;
  /**
   * How long an answer's body may send nothing before the connection counts as broken (and the
   * request is retried, a download resumed): a registry that stalls fails in about a minute, not
   * after undici's five. Not while ckpt itself holds the reading back. Default 60 s.
   */
  bodyTimeoutMs?: number;
}

export interface ResolvedOptions {
  credentials: (registry: string, signal: AbortSignal) => Promise<Credential | undefined>;
  hostSettings: (registry: string) => Promise<HostSettings>;
  tlsVerify: boolean;
  retry: RetryPolicy;
  userAgent: string;
  chunkSize: number;
  bodyTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, minDelayMs: 250, maxDelayMs: 8_000, maxRetryAfterMs: 60_000 };
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
export const DEFAULT_BODY_TIMEOUT_MS = 60_000;

export function resolveOptions(options: RegistryOptions = {}): ResolvedOptions {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 1024) {
    throw new CkptError('USAGE', `chunkSize must be an integer of at least 1024 bytes, not ${chunkSize}`);
  }
  const fixed: HostSettings = { scheme: options.plainHttp ? 'http' : 'https', ca: options.ca ?? [] };
  return {
    credentials: options.credentials ?? (() => Promise.resolve(undefined)),
    hostSettings: options.hostSettings ?? (() => Promise.resolve(fixed)),
    tlsVerify: options.tlsVerify ?? true,
    retry: { ...DEFAULT_RETRY, ...options.retry },
    userAgent: options.userAgent ?? 'ckpt-image/0.1',
    chunkSize,
    bodyTimeoutMs: options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
  };
}

/** Docker Hub's API lives on another host than the name users type. */
export function endpointHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}
