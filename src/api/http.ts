/**
 * HTTP plumbing for the API: body reading with a size limit, JSON replies, and the
 * one place where errors become HTTP statuses (from the code table).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, httpStatusOf, RosetError } from '../errors/index.js';
import type { ErrorBody } from './types.js';

export const MAX_BODY_BYTES = 1 << 20;

export async function readJson(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new ApiError('PAYLOAD_TOO_LARGE', `Request bodies are limited to ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiError('INVALID_JSON', 'The request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ApiError('BAD_REQUEST', 'The request body must be a JSON object');
  return value as Record<string, unknown>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (status === 204) {
    res.writeHead(204).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** A body that is not JSON (the Prometheus text format of `GET /metrics`). */
export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) }).end(text);
}

export function sendError(res: ServerResponse, err: RosetError): void {
  const body: ErrorBody = { error: { code: err.rosetCode, message: err.message, details: err.details } };
  const headers: Record<string, string> = {};
  if (err.rosetCode === 'UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="roset"';
  const text = JSON.stringify(body);
  res.writeHead(httpStatusOf(err.rosetCode), { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
}
