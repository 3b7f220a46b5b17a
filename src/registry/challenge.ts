/**
 * Parses `WWW-Authenticate` (RFC 7235): one or more challenges, each a scheme followed by
 * comma-separated `key=value` or `key="quoted value"` parameters, e.g.
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull,push"`.
 */

export interface Challenge {
  /** Lower-cased: `basic`, `bearer`, ... */
  scheme: string;
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;

export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  return values.flatMap(parseOne);
}

function parseOne(text: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const skip = (chars: string): void => {
    while (i < text.length && chars.includes(text.charAt(i))) i++;
  };
  const token = (): string | undefined => {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(text);
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  const quoted = (): string => {
    let value = '';
    i++; // opening quote
    while (i < text.length && text.charAt(i) !== '"') {
      if (text.charAt(i) === '\\') i++;
      value += text.charAt(i);
      i++;
    }
    i++; // closing quote
    return value;
  };

  while (i < text.length) {
    skip(' ,\t');
    const scheme = token();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    // Parameters follow until a token that is not followed by `=` starts the next challenge.
    for (;;) {
      skip(' \t');
      const start = i;
      const key = token();
      if (!key) {
        skip(' ,\t');
        if (i === start) break;
        continue;
      }
      skip(' \t');
      if (text.charAt(i) !== '=') {
        i = start;
        break;
      }
      i++;
      skip(' \t');
      challenge.params[key.toLowerCase()] = text.charAt(i) === '"' ? quoted() : (token() ?? '');
      skip(' \t');
      if (text.charAt(i) === ',') i++;
    }
  }
  return out;
}
