import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * An HTTP proxy on loopback between ckpt and a plain-HTTP registry that misbehaves on demand. The
 * Host header is passed on, so the registry's Locations point back at the proxy. Each rule
 * matches requests (method and URL) and applies a fault to its first `times` matches:
 *   - `status`: answer this status (e.g. 500, or 429 with `Retry-After`) without asking the registry;
 *   - `redirect`: answer 307 to another URL (blob storage elsewhere);
 *   - `drop-request`: read N bytes of the request body, then cut the connection; the registry sees nothing;
 *   - `cut-request`: pass N bytes of the request body on, then cut both connections;
 *   - `cut-response`: pass the answer on, cutting the connection after N bytes of its body;
 *   - `stall-response`: pass the answer on, then send nothing more after N bytes of its body, the connection left open;
 *   - `corrupt`: flip one byte of the answer's body;
 *   - `answer`: answer with the given status (200), headers and body instead of the registry;
 *   - `rewrite-status`: pass the request on, and answer the registry's answer under another status.
 * `skip` lets the first matches through, to hit, say, the third PATCH of an upload.
 */

export type Fault =
  | { kind: 'status'; status: number; retryAfter?: number }
  | { kind: 'redirect'; location: string }
  | { kind: 'drop-request'; afterBytes: number }
  | { kind: 'cut-request'; afterBytes: number }
  | { kind: 'cut-response'; afterBytes: number }
  | { kind: 'stall-response'; afterBytes: number }
  | { kind: 'corrupt'; at?: number }
  | { kind: 'answer'; status?: number; headers: Record<string, string>; body: Buffer }
  | { kind: 'rewrite-status'; status: number };

export interface FaultRule {
  method?: string;
  /** Matched against the path and query. */
  url?: RegExp;
  /** Only requests carrying this header (lower case): `content-range`, a chunk of an upload. */
  header?: string;
  /** ... whose value matches this. */
  headerValue?: RegExp;
  fault: Fault;
  /** How many matching requests pass untouched before the fault applies (default 0). */
  skip?: number;
  /** How many matching requests get the fault (default 1); later ones pass. */
  times?: number;
}

export interface FaultProxy {
  host: string;
  /** Adds a rule; returns a counter of how often it fired. */
  add(rule: FaultRule): { readonly fired: number };
  /** Every request seen: method, URL (path and query). */
  readonly requests: { method: string; url: string }[];
  stop(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  seen: number;
  fired: number;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const [upstreamHost, upstreamPort] = upstream.split(':');
  const rules: ActiveRule[] = [];
  const requests: FaultProxy['requests'] = [];
  const sockets = new Set<Socket>();

  const take = (req: IncomingMessage): Fault | undefined => {
    for (const rule of rules) {
      if ((rule.method && rule.method !== req.method) || (rule.url && !rule.url.test(req.url ?? ''))) continue;
      const value = rule.header ? req.headers[rule.header] : undefined;
      if (rule.header && (typeof value !== 'string' || (rule.headerValue && !rule.headerValue.test(value)))) continue;
      rule.seen++;
      if (rule.seen > (rule.skip ?? 0) && rule.fired < (rule.times ?? 1)) {
        rule.fired++;
        return rule.fault;
      }
    }
    return undefined;
  };

  const cut = (req: IncomingMessage): void => {
    req.socket.destroy();
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    const fault = take(req);
    if (fault?.kind === 'status') {
      req.resume();
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
      res.writeHead(fault.status, headers).end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'injected fault' }] }));
      return;
    }
    if (fault?.kind === 'answer') {
      req.resume();
      res.writeHead(fault.status ?? 200, { 'content-length': String(fault.body.length), ...fault.headers }).end(fault.body);
      return;
    }
    if (fault?.kind === 'redirect') {
      req.resume();
      res.writeHead(307, { location: fault.location }).end();
      return;
    }
    if (fault?.kind === 'drop-request') {
      let seen = 0;
      if (fault.afterBytes === 0) return cut(req);
      req.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen >= fault.afterBytes) cut(req);
      });
      return;
    }
    const upstreamReq = request({
      host: upstreamHost,
      port: Number(upstreamPort),
      method: req.method,
      path: req.url,
      headers: req.headers,
    });
    upstreamReq.on('error', () => req.socket.destroy());
    upstreamReq.on('response', (upstreamRes) => {
      res.writeHead(fault?.kind === 'rewrite-status' ? fault.status : (upstreamRes.statusCode ?? 502), upstreamRes.headers);
      let seen = 0;
      upstreamRes.on('data', (chunk: Buffer) => {
        let out = chunk;
        if (fault?.kind === 'corrupt') {
          const at = (fault.at ?? 0) - seen;
          if (at >= 0 && at < chunk.length) {
            out = Buffer.from(chunk);
            out[at] = (out[at] ?? 0) ^ 0xff;
          }
        }
        seen += chunk.length;
        if (fault?.kind === 'stall-response' && seen > fault.afterBytes) {
          res.write(out.subarray(0, out.length - (seen - fault.afterBytes)));
          upstreamRes.destroy();
          return;
        }
        if (fault?.kind === 'cut-response' && seen > fault.afterBytes) {
          res.write(out.subarray(0, out.length - (seen - fault.afterBytes)), () => {
            upstreamRes.destroy();
            req.socket.destroy();
          });
          return;
        }
        if (!res.write(out)) {
          upstreamRes.pause();
          res.once('drain', () => upstreamRes.resume());
        }
      });
      upstreamRes.on('end', () => res.end());
    });
    let sent = 0;
    req.on('data', (chunk: Buffer) => {
      if (fault?.kind === 'cut-request' && sent + chunk.length >= fault.afterBytes) {
        upstreamReq.write(chunk.subarray(0, fault.afterBytes - sent), () => {
          upstreamReq.destroy();
          req.socket.destroy();
        });
        sent = fault.afterBytes;
        req.pause();
        return;
      }
      sent += chunk.length;
      if (!upstreamReq.write(chunk)) {
        req.pause();
        upstreamReq.once('drain', () => req.resume());
      }
    });
    req.on('end', () => upstreamReq.end());
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    add(rule) {
      const active: ActiveRule = { ...rule, seen: 0, fired: 0 };
      rules.push(active);
      return {
        get fired() {
          return active.fired;
        },
      };
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
