import { setTimeout as delay } from 'node:timers/promises';
import { CkptError } from '../errors.js';
import type { RetryPolicy } from './options.js';

/**
 * When to try a request again and how long to wait first. The decision to retry belongs to the
 * caller, who alone knows whether its body can be sent a second time.
 */

/** 408, 429 and server errors are worth another try; 501 and 505 will never change their mind. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds; undefined when absent or malformed. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\s*\d+\s*$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before attempt `attempt + 1` (attempt counts from 1): what the registry asked for, capped,
 * or exponential backoff with full jitter so that parallel uploads do not retry in lockstep.
 */
export function retryDelay(attempt: number, policy: RetryPolicy, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs);
  const ceiling = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** (attempt - 1));
  return policy.minDelayMs / 2 + Math.random() * (ceiling - policy.minDelayMs / 2);
}

/** Sleeps, but wakes with ABORTED as soon as the signal fires. */
export async function sleep(ms: number, signal: AbortSignal | undefined, subject: string): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (err) {
    throw new CkptError('ABORTED', 'aborted while waiting to retry', { subject, cause: err });
  }
}
