import { describe, expect, it } from 'vitest';
import { isCkptError } from '../src/errors.js';
import { formatReference, parseReference } from '../src/reference.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['oci:/tmp/layout:tag', { kind: 'layout', dir: '/tmp/layout', tag: 'tag' }],
    ['oci:/tmp/layout', { kind: 'layout', dir: '/tmp/layout' }],
    ['oci:rel/dir:v1.0', { kind: 'layout', dir: 'rel/dir', tag: 'v1.0' }],
    [`oci:/tmp/layout@${DIGEST}`, { kind: 'layout', dir: '/tmp/layout', digest: DIGEST }],
    ['oci:/a:b/c', { kind: 'layout', dir: '/a:b/c' }],
    ['127.0.0.1:5000/ckpt/counter:v1', { kind: 'registry', registry: '127.0.0.1:5000', repository: 'ckpt/counter', tag: 'v1' }],
    ['localhost/counter', { kind: 'registry', registry: 'localhost', repository: 'counter' }],
    ['quay.io/org/app@' + DIGEST, { kind: 'registry', registry: 'quay.io', repository: 'org/app', digest: DIGEST }],
    ['busybox', { kind: 'registry', registry: 'docker.io', repository: 'library/busybox' }],
    ['user/app:1', { kind: 'registry', registry: 'docker.io', repository: 'user/app', tag: '1' }],
    ['docker://index.docker.io/busybox', { kind: 'registry', registry: 'docker.io', repository: 'library/busybox' }],
    ['[::1]:5000/repo:t', { kind: 'registry', registry: '[::1]:5000', repository: 'repo', tag: 't' }],
  ])('%s', (input, expected) => {
    expect(parseReference(input)).toEqual(expect.objectContaining(expected));
  });

  it.each([
    ['', 'empty reference'],
    ['oci:', 'needs a directory'],
    ['oci:dir:bad tag', 'invalid tag'],
    ['Upper/Case', 'invalid repository'],
    ['host:5000/repo:', 'invalid tag'],
    ['repo@sha256:abc', 'invalid digest'],
    ['host:5000/re..po', 'invalid repository'],
  ])('rejects %j', (input, message) => {
    let caught: unknown;
    try {
      parseReference(input);
    } catch (err) {
      caught = err;
    }
    expect(isCkptError(caught, 'INVALID_REFERENCE')).toBe(true);
    expect((caught as Error).message).toContain(message);
  });

  it('formats what it parsed', () => {
    expect(formatReference(parseReference('oci:/x:t'))).toBe('oci:/x:t');
    expect(formatReference(parseReference('busybox:1'))).toBe('docker.io/library/busybox:1');
  });
});
