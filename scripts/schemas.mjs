// Writes schemas/*.json from the zod schemas (run after `npm run build`); CI checks they are current.
import { writeFile } from 'node:fs/promises';
import { SCHEMAS, renderSchema } from '../dist/schemas/generate.js';

for (const [name, schema] of Object.entries(SCHEMAS)) {
  await writeFile(new URL(`../schemas/${name}`, import.meta.url), renderSchema(name, schema));
}
