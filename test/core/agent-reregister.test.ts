/**
 * An agent the control plane forgot (gc deregistered it when its pins expired, see
 * src/commit/gc.ts) registers again on its next poll, and `onRegistered` runs before
 * that agent polls again: the daemon makes its uploader distrust its upload records
 * there, so no task it is handed afterwards relies on a pin that may be gone.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../src/errors/index.js';
import { AgentLink } from '../../src/remote/agent-link.js';

describe('agent link: registering again', () => {
  it('on AGENT_NOT_FOUND registers again and runs onRegistered before the next poll', async () => {
    const events: string[] = [];
    let polls = 0;
    let secondPoll!: () => void;
    const polledAgain = new Promise<void>((r) => { secondPoll = r; });
    const link = {
      mountId: 'mnt_1',
      call: async (method: string, p: string, _body: unknown, o: { signal?: AbortSignal } = {}) => {
        if (method === 'POST' && p === '/v1/agents') {
          events.push('register');
          return { agent: {}, mountId: 'mnt_1', store: { url: 's3://b/p' }, agentTimeoutMs: 30_000, pollWaitMs: 100 };
        }
        if (p.endsWith('/poll')) {
          events.push('poll');
          if (++polls === 1) throw new ApiError('AGENT_NOT_FOUND', 'Agent agt_2 is not registered');
          secondPoll();
          await new Promise((_r, reject) => o.signal?.addEventListener('abort', () => reject(new Error('stopped')), { once: true }));
        }
        return {};
      },
    };
    const al = new AgentLink(link as never, { agentId: 'agt_2', mountpoint: '/mnt/r', hostname: 'n2' }, pino({ level: 'silent' }));
    al.onRegistered = () => events.push('onRegistered');
    await al.register();
    al.start({ id: 'agt_2', mountId: 'mnt_1', mountpoint: null, seal: async () => undefined, release: async () => undefined, upload: async () => ({ files: [], uploadedBytes: 0, dedupedBytes: 0 }) });
    await polledAgain;
    await al.stop();
    expect(events).toEqual(['register', 'onRegistered', 'poll', 'register', 'onRegistered', 'poll']);
  });
});
