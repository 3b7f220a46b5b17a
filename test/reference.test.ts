import { describe, expect, it } from 'vitest';
import { isCkptError } from '../src/errors.js';
import { formatReference, parseReference, parseRegistryHost } from '../src/reference.js';

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

describe('parseRegistryHost', () => {
  it('takes a name alone as a host, as podman login does, and a URL as its host', () => {
    expect(parseRegistryHost('myregistry')).toBe('myregistry');
    expect(parseRegistryHost('registry.example.com:5000')).toBe('registry.example.com:5000');
    expect(parseRegistryHost('https://registry.example.com/')).toBe('registry.example.com');
    expect(parseRegistryHost('http://[::1]:5000')).toBe('[::1]:5000');
    expect(parseRegistryHost('index.docker.io')).toBe('docker.io');
  });
  it('refuses what is not a host', () => {
    expect(() => parseRegistryHost('my_registry')).toThrow(/invalid registry host/);
    expect(() => parseRegistryHost('http://')).toThrow(/invalid registry host/);
  });
});
