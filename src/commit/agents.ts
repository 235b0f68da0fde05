/**
 * The control plane's view of data-plane agents: the daemons that stage bytes for a
 * mount. At seal time the control plane asks every agent of the mount to finish.
 *
 * Invariant: an agent answers for the files it owns (`NodeRecord.ownerAgent`) and for
 * nothing else; the engine refuses to commit a folder holding files of an agent that is
 * not registered, rather than committing without them.
 */
import type { ManifestFile } from '../api/types.js';

export interface AgentFile extends ManifestFile {
  nodeId: string;
}

export interface AgentUploadResult {
  files: AgentFile[];
  uploadedBytes: number;
  dedupedBytes: number;
}

/** An agent's upload so far: totals from its snapshot, done counts as files reach the store. */
export interface UploadProgress {
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  /** Bytes of the files done (uploaded now, earlier in the background, or already in the store). */
  bytesUploaded: number;
}

/** The shape of an UploadProgress that came over the wire, or null. */
export function uploadProgressOf(v: unknown): UploadProgress | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const n = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (!n(o.filesTotal) || !n(o.filesDone) || !n(o.bytesTotal) || !n(o.bytesUploaded)) return null;
  return { filesTotal: o.filesTotal, filesDone: o.filesDone, bytesTotal: o.bytesTotal, bytesUploaded: o.bytesUploaded };
}

export interface Agent {
  readonly id: string;
  readonly mountId: string;
  /** Local directory where this agent serves the mount, if it is a FUSE agent. */
  readonly mountpoint: string | null;
  /**
   * Waits until no handle open for writing remains inside the folder `folderId` (the
   * control plane has already raised the barrier), then records the snapshot of the
   * closed files. Rejects with OPEN_HANDLES after `timeoutMs`.
   */
  seal(commitId: string, folderId: string, timeoutMs: number): Promise<void>;
  /**
   * Uploads the snapshot's bytes as content-addressed objects (deduplicated), calling
   * `onProgress` once at the start and then as each file finishes (unthrottled: the
   * caller throttles).
   */
  upload(commitId: string, folderId: string, onProgress?: (p: UploadProgress) => void): Promise<AgentUploadResult>;
  /**
   * Forgets the snapshot once the commit is completed or failed. After a completed
   * commit the agent may hand its staged copies over to its read cache.
   */
  release(commitId: string, completed: boolean): Promise<void>;
}

export class AgentRegistry {
  private readonly agents = new Map<string, Agent>();

  register(agent: Agent): void {
    this.agents.set(agent.id, agent);
  }

  unregister(id: string): void {
    this.agents.delete(id);
  }

  get(id: string): Agent | undefined {
    return this.agents.get(id);
  }

  forMount(mountId: string): Agent[] {
    return [...this.agents.values()].filter((a) => a.mountId === mountId);
  }
}
