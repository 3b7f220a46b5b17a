import { randomUUID, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SigningKey } from './certs.js';

/**
 * A token server for distribution's token auth: checks Basic credentials or a refresh token,
 * grants the requested repository actions through a policy, and signs an ES256 JWT with a key
 * whose certificate the registry trusts (`x5c` header). Distribution accepts tokens up to 60 s
 * after their `exp`, so `exp` is set 60 s early: the token really stops working after `ttlSeconds`.
 */

export interface TokenServerOptions {
  key: SigningKey;
  issuer: string;
  service: string;
  /** user -> password; a request with other credentials gets 401. */
  users: Record<string, string>;
  /** refresh token -> user, for the `grant_type=refresh_token` POST. */
  refreshTokens?: Record<string, string>;
  /** How long the registry accepts a token. Default 300. */
  ttlSeconds?: number;
  /** What `expires_in` says (default: the truth). A lie makes the client meet a 401 mid-transfer. */
  announcedExpiresIn?: number;
  /** The actions granted; default: everything asked by a known user, `pull` for anonymous. */
  grant?: (user: string | undefined, repository: string, actions: string[]) => string[];
}

export interface TokenServer {
  realm: string;
  /** Tokens issued so far, with the scopes asked. */
  readonly issued: { user: string | undefined; scopes: string[]; method: string }[];
  setTtl(ttlSeconds: number, announcedExpiresIn?: number): void;
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts).toString('utf8');
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  let ttl = options.ttlSeconds ?? 300;
  let announced = options.announcedExpiresIn;
  const issued: TokenServer['issued'] = [];
  const grant = options.grant ?? ((user, _repo, actions) => (user ? actions : actions.filter((a) => a === 'pull')));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let user: string | undefined;
    let scopes: string[];
    if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      user = form.get('grant_type') === 'refresh_token' ? options.refreshTokens?.[form.get('refresh_token') ?? ''] : undefined;
      if (!user) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_grant"}');
        return;
      }
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
    } else {
      const auth = req.headers.authorization;
      if (auth?.startsWith('Basic ')) {
        const [name, ...rest] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
        if (!name || options.users[name] === undefined || options.users[name] !== rest.join(':')) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"wrong credentials"}');
          return;
        }
        user = name;
      }
      scopes = url.searchParams.getAll('scope');
    }
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || !name || actions === undefined) return [];
      return [{ type, name, actions: grant(user, name, actions.split(',')) }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [options.key.certDer.toString('base64')] };
    const claims = {
      iss: options.issuer,
      sub: user ?? '',
      aud: options.service,
      exp: now + ttl - 60,
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input), { key: options.key.key, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${b64url(signature)}`;
    issued.push({ user, scopes, method: req.method ?? 'GET' });
    const body = { token, access_token: token, expires_in: announced ?? ttl, issued_at: new Date(now * 1000).toISOString() };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => res.writeHead(500).end(String(err)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    issued,
    setTtl(seconds, announcedExpiresIn) {
      ttl = seconds;
      announced = announcedExpiresIn;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
