/**
 * Test-side handle on the recording, fault-injecting S3 proxy (s3-proxy-server.mjs),
 * which runs as a child process: tests count requests and bytes from its records and
 * steer its faults per test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface RecordedRequest {
  method: string;
  /** Path with the query string, e.g. `/bucket/prefix/objects/ab/abcd?partNumber=1&uploadId=...`. */
  url: string;
  bytes: number;
  status: number;
  fault: string | null;
}

export interface FaultRule {
  method?: 'GET' | 'PUT' | 'POST' | 'HEAD' | 'DELETE';
  pathIncludes?: string;
  queryIncludes?: string;
  every?: number;
  times?: number;
  action: 'status' | 'reset' | 'stall' | 'truncate' | 'corrupt' | 'corrupt-request';
  status?: number;
  code?: string;
  seconds?: number;
}

export interface RecordingProxy {
  endpoint: string;
  requests: () => Promise<RecordedRequest[]>;
  clear: () => Promise<void>;
  /** Replaces the fault rules; no argument removes them all. */
  faults: (rules?: FaultRule[]) => Promise<void>;
  close: () => Promise<void>;
}

const SCRIPT = fileURLToPath(new URL('./s3-proxy-server.mjs', import.meta.url));

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const proc: ChildProcess = spawn(process.execPath, [SCRIPT, target], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n')[0];
      if (buf.includes('\n')) resolve(JSON.parse(line!).port as number);
    });
    proc.once('exit', (code) => reject(new Error(`S3 proxy exited (${code})`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    requests: async () => (await fetch(`${endpoint}/__proxy/requests`)).json() as Promise<RecordedRequest[]>,
    clear: async () => { await fetch(`${endpoint}/__proxy/requests`, { method: 'DELETE' }); },
    faults: async (rules = []) => {
      await fetch(`${endpoint}/__proxy/faults`, { method: 'PUT', body: JSON.stringify({ rules }) });
    },
    close: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}
