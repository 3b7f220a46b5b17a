import { z } from 'zod';
import { CkptError } from '../errors.js';

/** zod schemas of the OCI structures ckpt reads and writes; the TypeScript types are inferred. */

export const DigestSchema = z
  .string()
  .regex(/^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/, 'not a sha256 or sha512 digest');

export const AnnotationsSchema = z.record(z.string(), z.string());

export const PlatformSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
});
export type Platform = z.infer<typeof PlatformSchema>;

export const DescriptorSchema = z.object({
  mediaType: z.string().min(1),
  digest: DigestSchema,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: AnnotationsSchema.optional(),
  data: z.string().optional(),
  artifactType: z.string().optional(),
  platform: PlatformSchema.optional(),
});
export type Descriptor = z.infer<typeof DescriptorSchema>;

export const ManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  subject: DescriptorSchema.optional(),
  annotations: AnnotationsSchema.optional(),
});
export type Manifest = z.infer<typeof ManifestSchema>;

export const IndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(DescriptorSchema),
  subject: DescriptorSchema.optional(),
  annotations: AnnotationsSchema.optional(),
});
export type Index = z.infer<typeof IndexSchema>;

export const HistorySchema = z.object({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
});

export const ImageConfigSchema = z.object({
  created: z.string().optional(),
  author: z.string().optional(),
  architecture: z.string(),
  os: z.string(),
  variant: z.string().optional(),
  config: z
    .object({
      Labels: z.record(z.string(), z.string()).optional(),
      WorkingDir: z.string().optional(),
      Env: z.array(z.string()).optional(),
      Cmd: z.array(z.string()).optional(),
      Entrypoint: z.array(z.string()).optional(),
    })
    .loose()
    .optional(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(DigestSchema) }),
  history: z.array(HistorySchema).optional(),
});
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

export const LayoutMarkerSchema = z.object({ imageLayoutVersion: z.string() });

/** Parses JSON bytes against a schema; failures become one CkptError naming the subject. */
export function parseJson<T extends z.ZodType>(
  schema: T,
  bytes: Buffer | string,
  subject: string,
  code: 'INVALID_MANIFEST' | 'INVALID_METADATA' | 'NOT_LAYOUT' = 'INVALID_MANIFEST',
): z.infer<T> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString());
  } catch (err) {
    // Not the parser's message, nor the error as cause: V8 quotes the text around the fault, and a
    // checkpoint's spec.dump holds the process's environment. Its position is enough.
    const position = / at position (\d+)/.exec((err as Error).message)?.[1];
    throw new CkptError(code, `broken JSON${position === undefined ? '' : ` at position ${position}`}`, { subject });
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new CkptError(code, `unexpected content${where}: ${issue?.message ?? 'invalid'}`, { subject });
  }
  return result.data;
}
