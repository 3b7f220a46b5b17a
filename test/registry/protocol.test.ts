import { describe, expect, it } from 'vitest';
import { parseChallenges } from '../../src/registry/challenge.js';
import { redact, responseError, transportError } from '../../src/registry/errors.js';
import { endpointHost } from '../../src/registry/options.js';
import { isRetryableStatus, parseRetryAfter, retryDelay } from '../../src/registry/retry.js';
import { withQuery } from '../../src/registry/upload.js';
import { DEFAULT_RETRY } from '../../src/registry/options.js';

describe('WWW-Authenticate parsing', () => {
  it('reads a bearer challenge with quoted, comma-holding values', () => {
    expect(
      parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope"'),
    ).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push', error: 'insufficient_scope' },
      },
    ]);
  });

  it('reads several challenges in one header and in several', () => {
    expect(parseChallenges('Basic realm="r1", Bearer realm="https://x/t",service=s').map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(parseChallenges(['Basic realm=plain', 'Bearer realm="https://x"']).map((c) => c.params.realm)).toEqual(['plain', 'https://x']);
    expect(parseChallenges(undefined)).toEqual([]);
  });
});

describe('retry policy', () => {
  it('retries 408, 429 and 5xx but 501 and 505', () => {
    expect([408, 429, 500, 502, 503, 504].every(isRetryableStatus)).toBe(true);
    expect([400, 401, 403, 404, 501, 505].some(isRetryableStatus)).toBe(false);
  });

  it('honours Retry-After in seconds or as a date, capped', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString(), Date.now())).toBeGreaterThan(3000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(retryDelay(1, DEFAULT_RETRY, 3_600_000)).toBe(DEFAULT_RETRY.maxRetryAfterMs);
  });

  it('backs off exponentially with jitter under the maximum', () => {
    for (let attempt = 1; attempt < 10; attempt++) {
      const d = retryDelay(attempt, DEFAULT_RETRY);
      expect(d).toBeGreaterThanOrEqual(DEFAULT_RETRY.minDelayMs / 2);
      expect(d).toBeLessThanOrEqual(Math.min(DEFAULT_RETRY.maxDelayMs, DEFAULT_RETRY.minDelayMs * 2 ** (attempt - 1)));
    }
  });
});

describe('error mapping', () => {
  it('maps distribution error bodies and statuses to codes', () => {
    const body = (code: string): string => JSON.stringify({ errors: [{ code, message: 'm' }] });
    expect(responseError(404, body('MANIFEST_UNKNOWN'), 'GET x', 's').code).toBe('NOT_FOUND');
    expect(responseError(403, body('DENIED'), 'GET x', 's').code).toBe('DENIED');
    expect(responseError(400, body('DIGEST_INVALID'), 'PUT x', 's').code).toBe('DIGEST_MISMATCH');
    expect(responseError(400, body('SIZE_INVALID'), 'PUT x', 's').code).toBe('SIZE_MISMATCH');
    expect(responseError(500, 'garbage', 'GET x', 's').code).toBe('REGISTRY_ERROR');
  });

  it('says what to do when HTTPS meets a plain-HTTP registry, not what OpenSSL says', () => {
    const openssl = Object.assign(new Error('807C:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/ssl/record/ssl3_record.c:350:'), {
      code: 'ERR_SSL_WRONG_VERSION_NUMBER',
    });
    const err = transportError(openssl, 'GET 192.0.2.2:5000/v2/', '192.0.2.2:5000/x/y:v1');
    expect(err.code).toBe('NETWORK');
    expect(err.message).toBe(
      '192.0.2.2:5000/x/y:v1: GET 192.0.2.2:5000/v2/: the other end answered in plain text, not TLS (if the registry serves plain HTTP: --plain-http or the option plainHttp, or insecure = true in registries.conf)',
    );
  });

  it('suggests a client certificate for a refused or closed TLS connection only where none was sent', () => {
    const closed = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
    const alert = Object.assign(new Error('error:0A000410:SSL routines::sslv3 alert handshake failure:ssl/record/rec_layer_s3.c:1601'), { code: 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE' });
    for (const err of [closed, alert]) {
      expect(transportError(err, 'GET h/v2/', 's', undefined, { clientCert: false }).message).toContain('client certificate');
      expect(transportError(err, 'GET h/v2/', 's', undefined, { clientCert: true }).message).not.toContain('client certificate');
      expect(transportError(err, 'GET h/v2/', 's').message).not.toContain('client certificate');
    }
    expect(transportError(alert, 'GET h/v2/', 's').message).toBe('s: GET h/v2/: the registry refused the TLS handshake (ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE)');
  });

  it('redacts credentials that a registry echoes', () => {
    const text = redact('auth failed for Bearer eyJhbGciOi.eyJzdWIi.c2ln with password=hunter2 and "token": "abc123"');
    expect(text).not.toMatch(/eyJ|hunter2|abc123/);
    // Blob storage quoting the signed URL a redirect sent us to.
    const storage = redact('SignatureDoesNotMatch for /b?X-Amz-Credential=AKIAEXAMPLE%2F1&X-Amz-Signature=SECRETSIG&X-Amz-Security-Token=T0K, or ?sv=1&sig=AZSIG&se=2');
    expect(storage).not.toMatch(/AKIAEXAMPLE|SECRETSIG|T0K|AZSIG/);
    expect(storage).toContain('X-Amz-Signature=<redacted>');
  });
});

describe('URLs', () => {
  it('appends the digest to a Location without re-encoding its state', () => {
    const location = new URL('http://r/v2/a/blobs/uploads/u?_state=a%2Bb%3D%3D&x=1');
    expect(withQuery(location, 'digest', 'sha256:00').href).toBe('http://r/v2/a/blobs/uploads/u?_state=a%2Bb%3D%3D&x=1&digest=sha256%3A00');
    expect(withQuery(new URL('http://r/u'), 'digest', 'd').href).toBe('http://r/u?digest=d');
  });

  it('talks to registry-1.docker.io for docker.io', () => {
    expect(endpointHost('docker.io')).toBe('registry-1.docker.io');
    expect(endpointHost('127.0.0.1:5000')).toBe('127.0.0.1:5000');
  });
});
