import { readFile, readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { SCHEMAS, renderSchema } from '../src/schemas/generate.js';

const dir = new URL('../schemas/', import.meta.url);

describe('schemas/', () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`${name} is current (regenerate with make schemas)`, async () => {
      expect(await readFile(new URL(name, dir), 'utf8')).toBe(renderSchema(name, schema));
    });
  }
  it('holds no stale schema', async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    expect(files.sort()).toEqual(Object.keys(SCHEMAS).sort());
  });
});
