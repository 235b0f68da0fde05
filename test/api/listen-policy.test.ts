/**
 * The listen policy: plain HTTP only on loopback, unless TLS is configured or
 * `insecureListen` is given; the refusal says why and what to do.
 */
import { describe, expect, it } from 'vitest';
import { checkListenPolicy, isLoopbackHost } from '../../src/api/listen-policy.js';
import { RosetError } from '../../src/errors/index.js';

const tls = { certFile: '/etc/roset/server.crt', keyFile: '/etc/roset/server.key' };

function refusal(host: string): RosetError {
  try {
    checkListenPolicy({ host });
  } catch (err) {
    return err as RosetError;
  }
  throw new Error(`${host} was allowed`);
}

describe('listen policy', () => {
  it('knows loopback: 127.0.0.0/8, ::1 in any spelling, localhost', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '127.255.255.254', '::1', '[::1]', '0:0:0:0:0:0:0:1', '0::1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) {
      expect(isLoopbackHost(h), h).toBe(true);
    }
    for (const h of ['', '0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '1.127.0.0', '::2', '::ffff:10.0.0.1', 'fe80::1%lo', 'localhost.example.com', 'my-node', '127.0.0.1.nip.io']) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });

  it('allows plain HTTP on loopback', () => {
    for (const host of ['127.0.0.1', '::1', 'localhost']) expect(() => checkListenPolicy({ host })).not.toThrow();
  });

  it('refuses plain HTTP elsewhere, saying why and what to do', () => {
    for (const host of ['0.0.0.0', '::', '', '10.1.2.3', 'node-7']) {
      const err = refusal(host);
      expect(err).toBeInstanceOf(RosetError);
      expect(err.rosetCode).toBe('INSECURE_LISTEN');
      expect(err.message).toMatch(/API key/);
      expect(err.message).toMatch(/clear text/);
      expect(err.message).toMatch(/--tls-cert FILE --tls-key FILE/);
      expect(err.message).toMatch(/--insecure-listen/);
    }
    expect(refusal('').message).toMatch(/on every address/);
    expect(refusal('0.0.0.0').message).toMatch(/on 0\.0\.0\.0/);
  });

  it('allows any address with TLS, or with insecureListen', () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3']) {
      expect(() => checkListenPolicy({ host, tls })).not.toThrow();
      expect(() => checkListenPolicy({ host, insecureListen: true })).not.toThrow();
      expect(() => checkListenPolicy({ host, tls: null, insecureListen: false })).toThrow(/clear text/);
    }
  });
});
