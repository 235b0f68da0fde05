/**
 * `ControlApi` over HTTP: what the filesystem core of an agent on another node uses in
 * place of the in-process control plane. Each call is one `POST /v1/agents/{id}/rpc`;
 * the control plane runs the same method, whose transaction checks the barrier there.
 *
 * Invariant: a refusal comes back as the same RosetError code the control plane threw
 * (SEALED, COMMITTED, NODE_EXISTS, ...), so the kernel sees the same errno on every
 * node. Reads are retried while the control plane is away (see http.ts); changes only
 * when the server cannot have made them.
 */
import type { AutoCommitRules, NodeType } from '../api/types.js';
import type { ControlApi } from '../control/service.js';
import { fromWire, type RosetError, type WireError } from '../errors/index.js';
import type { AttrChange, Barrier, Guard, MoveRequest, NewNode, NodeRecord, NodeWithPath, SubtreeNode } from '../meta/types.js';
import type { ControlLink } from './http.js';

export class RemoteControl implements ControlApi {
  constructor(private readonly link: ControlLink, private readonly agentId: string) {}

  private async rpc<T>(method: string, args: unknown[], idempotent: boolean): Promise<T> {
    const r = await this.link.call<{ value: T }>('POST', `/v1/agents/${encodeURIComponent(this.agentId)}/rpc`, { method, args }, { idempotent });
    return r.value;
  }

  root(mountId: string): Promise<NodeRecord> { return this.rpc('root', [mountId], true); }
  lookupChild(parentId: string, name: string): Promise<NodeRecord | null> { return this.rpc('lookupChild', [parentId, name], true); }
  lookupById(mountId: string, id: string): Promise<NodeRecord | null> { return this.rpc('lookupById', [mountId, id], true); }
  nodeForWrite(mountId: string, id: string): Promise<{ node: NodeRecord; barrier: Barrier | null } | null> { return this.rpc('nodeForWrite', [mountId, id], true); }
  children(nodeId: string): Promise<NodeRecord[]> { return this.rpc('children', [nodeId], true); }
  countSubfolders(nodeId: string): Promise<number> { return this.rpc('countSubfolders', [nodeId], true); }
  createChild(n: NewNode): Promise<NodeRecord> { return this.rpc('createChild', [n], false); }
  removeChild(mountId: string, parentId: string, name: string, type: NodeType): Promise<NodeRecord> { return this.rpc('removeChild', [mountId, parentId, name, type], false); }
  moveChild(req: MoveRequest): Promise<{ node: NodeRecord; replaced: NodeRecord | null }> { return this.rpc('moveChild', [req], false); }
  // Setting the same attributes twice leaves the same node.
  setNodeAttrs(mountId: string, id: string, attrs: AttrChange, guard: Guard): Promise<NodeRecord> { return this.rpc('setNodeAttrs', [mountId, id, attrs, guard], true); }
  async assertWritable(mountId: string, id: string): Promise<void> { await this.rpc('assertWritable', [mountId, id], true); }
  async barrierError(b: Barrier): Promise<RosetError> { return fromWire(await this.rpc<WireError>('barrierError', [b], true)); }
  subtree(folderId: string): Promise<SubtreeNode[]> { return this.rpc('subtree', [folderId], true); }
  pathOf(id: string): Promise<string | null> { return this.rpc('pathOf', [id], true); }
  resolvePath(mountId: string, path: string): Promise<NodeWithPath | null> { return this.rpc('resolvePath', [mountId, path], true); }
  // Pinning twice leaves one pin.
  pinObject(mountId: string, agentId: string, nodeId: string, sha256: string): Promise<boolean> { return this.rpc('pinObject', [mountId, agentId, nodeId, sha256], true); }
  autoCommitRules(mountId: string): Promise<AutoCommitRules> { return this.rpc('autoCommitRules', [mountId], true); }
}
