/**
 * Redaction of credentials embedded in server URLs (`nats://user:pass@host:4222`,
 * `https://token@gw:8443`), for everything that leaves the process: logs, the spool's meta,
 * `/status`, `check` output, errors.
 *
 * Invariant: the result never contains the userinfo part of a URL; everything else (scheme,
 * host, port, path) is kept so that an operator still sees where the program connects.
 * A string that is not a URL with userinfo is returned unchanged.
 */

const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i;

/** `nats://user:pass@host:4222` -> `nats://***@host:4222`; anything else unchanged. */
export function redactUrl(url: string): string {
  return url.replace(USERINFO, (_m, scheme: string) => `${scheme}***@`);
}

/** redactUrl for every entry. */
export function redactUrls(urls: readonly string[]): string[] {
  return urls.map(redactUrl);
}

/** Replaces every URL userinfo found anywhere in a text (an error message naming a URL). */
export function redactText(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi, '$1***@');
}
