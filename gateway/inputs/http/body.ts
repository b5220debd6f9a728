/**
 * Request bodies: raw bytes (fastify's `parseAs: 'buffer'`, capped at http.bodyLimitBytes as
 * sent), then `Content-Encoding` undone. gzip (and deflate) are inflated off the event loop by
 * zlib with `maxOutputLength` = bodyLimitBytes, so a zip bomb stops at the limit (413) instead
 * of filling memory. Any other encoding is refused with 415.
 */
import { gunzip, inflate, type InputType, type ZlibOptions } from 'node:zlib';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError } from './errors.js';

type Inflater = (buf: InputType, opts: ZlibOptions, cb: (err: Error | null, out: Buffer) => void) => void;

function run(fn: Inflater, body: Buffer, limit: number, encoding: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    fn(body, { maxOutputLength: limit }, (err, out) => {
      if (!err) {
        resolve(out);
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        reject(new HttpError(413, 'FERRY_BODY_TOO_LARGE', `the ${encoding}-decoded body is larger than http.bodyLimitBytes (${limit} bytes)`, { cause: err }));
      } else {
        reject(new HttpError(400, 'FERRY_BAD_REQUEST', `the body is not valid ${encoding} data: ${err.message}`, { cause: err }));
      }
    });
  });
}

/** Undoes the request's Content-Encoding; the result is at most `limit` bytes. */
export function decodeBody(contentEncoding: string | undefined, body: Buffer, limit: number): Promise<Buffer> {
  const enc = (contentEncoding ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return Promise.resolve(body);
  if (enc === 'gzip' || enc === 'x-gzip') return run(gunzip, body, limit, 'gzip');
  if (enc === 'deflate') return run(inflate, body, limit, 'deflate');
  return Promise.reject(new HttpError(415, 'FERRY_UNSUPPORTED_MEDIA_TYPE', `Content-Encoding "${enc}" is not supported (use gzip or none)`));
}

/**
 * Registers a parser in `app`'s context that hands the handler the decoded body as a Buffer
 * for each of `contentTypes`.
 */
export function addRawBodyParser(app: FastifyInstance, contentTypes: string[], limit: number): void {
  app.addContentTypeParser(contentTypes, { parseAs: 'buffer', bodyLimit: limit }, (req: FastifyRequest, body: Buffer | string) =>
    decodeBody(req.headers['content-encoding'], Buffer.isBuffer(body) ? body : Buffer.from(body), limit),
  );
}

/** Parses a decoded body as JSON; 400 naming the problem when it is not. */
export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new HttpError(400, 'FERRY_BAD_REQUEST', 'the JSON body is empty');
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw new HttpError(400, 'FERRY_BAD_REQUEST', `the body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
