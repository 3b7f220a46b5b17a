import { z } from 'zod';
import { CheckpointMetadataSchema } from '../checkpoint/schemas.js';
import { InspectResultSchema } from '../commands/inspect.js';
import { CheckpointAnnotationsSchema } from '../image/annotation-schema.js';
import { ImageConfigSchema, IndexSchema, ManifestSchema } from '../oci/schemas.js';

/** The JSON Schemas of every format ckpt writes, generated from the zod schemas that type the code. */
export const SCHEMAS: Record<string, z.ZodType> = {
  'manifest.schema.json': ManifestSchema,
  'index.schema.json': IndexSchema,
  'image-config.schema.json': ImageConfigSchema,
  'annotations.schema.json': CheckpointAnnotationsSchema,
  'checkpoint-metadata.schema.json': CheckpointMetadataSchema,
  'inspect.schema.json': InspectResultSchema,
};

export function renderSchema(name: string, schema: z.ZodType): string {
  const json = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' });
  return `${JSON.stringify({ $id: `https://ckpt.dev/schemas/${name}`, ...json }, null, 2)}\n`;
}
