import type { IncomingMessage } from 'node:http';
import { checkImageHeader } from '@dexar/core/runtime';
import { FILE_LIMITS } from '@dexar/runtime-node';
import type { z } from 'zod';
import { HttpError } from './errors.js';

const MiB = 1024 * 1024;

/** A request body: the image (at most the CLI's image file limit) and 1 MiB for the request JSON and multipart framing. */
export const MAX_BODY_BYTES = FILE_LIMITS.image + MiB;

const tooLarge = () =>
  new HttpError(
    413,
    'invalid-input',
    `the request body is over ${MAX_BODY_BYTES / MiB} MiB: an image may have ${FILE_LIMITS.image / MiB} MiB, downscale or compress it`,
    { Connection: 'close' },
  );

/** The whole body, refused from its Content-Length, or as soon as it passes the limit, before it is all read. */
async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

export interface Upload<T> {
  /** The image file's bytes, its header checked against the CLI's limits (nothing decoded yet). */
  image: Uint8Array;
  request: T;
}

/**
 * An upload: multipart/form-data with the fields `image` (a file) and `request` (JSON, checked
 * against `schema`), validated before any work. Multipart is parsed by Node's own fetch
 * implementation (undici's `Response.formData`), in memory, within the body limit: nothing is
 * written to disk.
 */
export async function readUpload<S extends z.ZodType>(req: IncomingMessage, schema: S): Promise<Upload<z.output<S>>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type)) {
    throw new HttpError(
      415,
      'invalid-input',
      `the body is ${type ? JSON.stringify(type.split(';')[0]) : 'untyped'}: send multipart/form-data with the fields "image" (the file) and "request" (JSON)`,
    );
  }
  const bytes = await readBody(req);
  let form: FormData;
  try {
    form = await new Response(new Blob([bytes as Uint8Array<ArrayBuffer>]), {
      headers: { 'content-type': type },
    }).formData();
  } catch (error) {
    throw new HttpError(400, 'invalid-input', `the multipart body cannot be read (${(error as Error).message})`);
  }
  const request = parseRequest(form.get('request'), schema);
  const file = form.get('image');
  if (!(file instanceof Blob)) {
    throw new HttpError(400, 'invalid-input', 'the request has no image: send the file as the multipart field "image"');
  }
  const image = new Uint8Array(await file.arrayBuffer());
  // the declared size against the CLI's limits, from the header alone: refused before the queue and any decoder
  checkImageHeader(image);
  return { image, request };
}

function parseRequest<S extends z.ZodType>(field: FormDataEntryValue | null, schema: S): z.output<S> {
  if (typeof field !== 'string') {
    throw new HttpError(400, 'invalid-input', 'the request has no "request" field: send the options as JSON in it');
  }
  let json: unknown;
  try {
    json = JSON.parse(field);
  } catch (error) {
    throw new HttpError(
      400,
      'invalid-input',
      `the "request" field is not valid JSON (${(error as Error).message}): send one JSON object (see /api/schema)`,
    );
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    throw new HttpError(
      400,
      'invalid-options',
      `invalid request: ${where}${issue?.message ?? 'unknown problem'} (see /api/schema)`,
    );
  }
  return parsed.data;
}
