/**
 * Cluster membership from a running corosync, as dlm_controld does it: the service
 * joins a CPG group, and every configuration change of that group becomes a change of
 * the Lowcomms node table, in the order corosync delivered it. A member that left is
 * removed (removeNode: its sockets close, its queued and unacked messages are dropped and
 * reported by the Lowcomms 'dropped' event, reason 'removed'); a member that joined is
 * added from corosync's nodelist (cmap) with fresh protocol state, and one that was still
 * in the table is reset (resetNode), which is what a kernel DLM peer needs. Quorum comes
 * from votequorum.
 *
 * corosync's client libraries are loaded at run time by the addon (dlopen): without
 * them everything else in lowcomms works, and only this module throws
 * CorosyncUnavailableError, naming the Debian packages.
 */
import { EventEmitter } from 'node:events';
import type { NativeCpgMember, NativeMembership, NativeMembershipEvent } from '../binding';
import { ConfigError, CorosyncError, CorosyncUnavailableError, LowcommsError, StateError } from './errors';
import type { Lowcomms } from './lowcomms';
import { native } from './native';
import { NodeTable, familyPreference, resolveNames, type LoadOptions, type NodeConfig } from './nodetable';

/** Why a process joined or left a CPG group (cpg_reason_t). */
export type CpgReason = 'join' | 'leave' | 'nodedown' | 'nodeup' | 'procdown' | 'unknown';

const REASONS: readonly CpgReason[] = ['unknown', 'join', 'leave', 'nodedown', 'nodeup', 'procdown'];

/** One process of the CPG group, as a configuration change lists it. */
export interface CpgMember {
  nodeid: number;
  pid: number;
  reason: CpgReason;
}

/** A node of corosync's nodelist (cmap nodelist.node.*). */
export interface CorosyncClusterNode {
  nodeid: number;
  /** The node's `name`, if set. */
  name?: string;
  /** ring0_addr, ring1_addr, ... in ring order, as corosync has them (names not resolved). */
  addrs: string[];
}

/** corosync's view of the cluster, read from its cmap. */
export interface CorosyncClusterInfo {
  clusterName: string;
  /** This host's nodeid (0 if cmap does not say). */
  localNodeid: number;
  /** totem.ip_version, if set: how corosync resolves host names (ipv4, ipv6, ipv4-6, ipv6-4). */
  ipVersion?: string;
  /** totem.transport (knet, udpu, udp). */
  transport?: string;
  nodes: CorosyncClusterNode[];
}

export interface MembershipOptions {
  /** The CPG group name: one per application, the same on every node (1..128 bytes). */
  group: string;
  /** How ring addresses that are host names are resolved (see NodeTable.load). */
  resolve?: LoadOptions;
}

export interface MembershipEvents {
  /**
   * One CPG configuration change, exactly as delivered (after the node table was
   * updated and the 'join'/'leave' events of this change were emitted).
   */
  change: [{ members: number[]; left: CpgMember[]; joined: CpgMember[] }];
  /**
   * A node's service left the group (stopped, crashed, its host went down or was cut
   * off): it was removed from the node table. What was queued or unacked for it is
   * reported by the Lowcomms 'dropped' event (reason 'removed') that follows.
   */
  leave: [{ nodeid: number; reason: CpgReason }];
  /**
   * A node's service joined the group: added to the node table (fresh protocol state),
   * or reset if it was still there (`reset` true, resetNode()). `initial` marks the
   * members found when this node joined.
   */
  join: [{ nodeid: number; reason: CpgReason; reset: boolean; initial: boolean }];
  /** votequorum's state: a service usually must not act without quorum. */
  quorum: [{ quorate: boolean; ringSeq: number; view: number[] }];
  /**
   * The connection to the local corosync is gone (corosync stopped or crashed). No more
   * changes will come: the node table is no longer the cluster's. A service on a real
   * cluster stops here (the cluster fences this node anyway).
   */
  lost: [CorosyncError];
  /** A joined node could not be added (no address in corosync's nodelist...). */
  error: [LowcommsError];
}

const binding = native;

/** Maps the addon's {code: 'ENOCOROSYNC' | 'ECOROSYNC'} errors to typed ones. */
function mapError(err: unknown): LowcommsError {
  const e = err as { code?: string; detail?: string; op?: string; cs?: number; message?: string };
  if (e?.code === 'ENOCOROSYNC') return new CorosyncUnavailableError(e.detail ?? e.message ?? '');
  if (e?.code === 'ECOROSYNC') {
    const hint = e.cs === 2 ? ' (is corosync running on this host, and may this user talk to it?)' : '';
    return new CorosyncError(`corosync: ${e.message}${hint}`, e.op ?? '', e.cs ?? 0);
  }
  if (err instanceof LowcommsError) return err;
  return new CorosyncError(`corosync: ${e?.message ?? String(err)}`, '');
}

/** Whether corosync's client libraries can be loaded on this host (corosync itself may be down). */
export function corosyncAvailable(): boolean {
  return binding().corosyncAvailable().ok;
}

/**
 * Reads the running cluster's nodelist from corosync's cmap.
 * @throws CorosyncUnavailableError without the client libraries; CorosyncError when
 *   corosync is not running or refuses
 */
export function readCorosyncCluster(): CorosyncClusterInfo {
  let raw;
  try {
    raw = binding().corosyncNodelist();
  } catch (err) {
    throw mapError(err);
  }
  return {
    clusterName: raw.clusterName,
    localNodeid: raw.localNodeid,
    ...(raw.ipVersion ? { ipVersion: raw.ipVersion } : {}),
    ...(raw.transport ? { transport: raw.transport } : {}),
    nodes: raw.nodes.map((n) => ({ nodeid: n.nodeid, addrs: [...n.addrs], ...(n.name ? { name: n.name } : {}) })),
  };
}

/**
 * The running cluster as a node table and this host's nodeid: what `new Lowcomms({
 * nodeid, nodes })` needs on a corosync host, with no copy of corosync.conf.
 * Host names are resolved as corosync does (totem.ip_version, or its default for the
 * transport), unless the nodelist has IP literals, whose family the table then takes.
 */
export async function corosyncNodeTable(opts: LoadOptions = {}): Promise<{ nodeid: number; nodes: NodeTable; clusterName: string }> {
  const info = readCorosyncCluster();
  if (info.nodes.length === 0) throw new ConfigError('corosync cmap: the nodelist is empty (nodelist.node.*)');
  const table = await toTable(info.nodes, opts, preference(info));
  return { nodeid: info.localNodeid, nodes: table, clusterName: info.clusterName };
}

function preference(info: CorosyncClusterInfo): Array<4 | 6> {
  return familyPreference(info.ipVersion, info.transport, 'corosync cmap');
}

async function toConfigs(nodes: CorosyncClusterNode[], opts: LoadOptions, prefer: Array<4 | 6>): Promise<NodeConfig[]> {
  const list: NodeConfig[] = nodes.map((n) => ({ nodeid: n.nodeid, addrs: n.addrs, ...(n.name ? { name: n.name } : {}) }));
  if (opts.resolve === false) return list;
  return resolveNames(list, prefer, opts.lookup ?? ((name) => import('node:dns/promises').then((d) => d.lookup(name, { all: true }))), 'corosync cmap');
}

async function toTable(nodes: CorosyncClusterNode[], opts: LoadOptions, prefer: Array<4 | 6>): Promise<NodeTable> {
  const t = new NodeTable();
  for (const n of await toConfigs(nodes, opts, prefer)) {
    try {
      t.add(n);
    } catch (err) {
      throw new ConfigError(`corosync cmap: ${(err as Error).message}`, { cause: err });
    }
  }
  return t;
}

/**
 * Follows a CPG group and keeps a Lowcomms instance's node table equal to its members.
 *
 * start() joins the group. The first configuration change lists the members already
 * there: every node of the table that is not one of them is removed (nothing can reach
 * it yet), every member that is not in the table is added from corosync's nodelist.
 * From then on each change is applied in corosync's order: left members removed, joined
 * members added (or reset), then 'change'. Changes are applied one at a time, so that a
 * join that needs cmap or DNS does not let a later leave overtake it.
 */
export class CorosyncMembership extends EventEmitter<MembershipEvents> {
  private native: NativeMembership | undefined;
  private state: 'new' | 'running' | 'stopped' = 'new';
  private localNodeid = 0;
  /** Processes in the group per nodeid: a node is a member while it has one. */
  private readonly pids = new Map<number, Set<number>>();
  private initial = true;
  private lastQuorate = false;
  /** Node configs removed on leave, to re-add with the same options (mark, kernel). */
  private readonly removed = new Map<number, NodeConfig>();
  /** corosync's nodelist as last read, for addresses of joining nodes. */
  private clusterNodes = new Map<number, CorosyncClusterNode>();
  private prefer: Array<4 | 6> = [6, 4];
  /** Changes are applied strictly in order. */
  private queue: Promise<void> = Promise.resolve();
  private firstChange: { resolve: () => void; promise: Promise<void> };

  constructor(
    readonly comms: Lowcomms,
    private readonly opts: MembershipOptions,
  ) {
    super();
    if (!opts || typeof opts.group !== 'string' || opts.group.length === 0 || Buffer.byteLength(opts.group) > 128)
      throw new ConfigError('membership group must be a CPG group name of 1..128 bytes');
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.firstChange = { resolve, promise };
  }

  /** The last quorum state from votequorum. */
  get quorate(): boolean {
    return this.native ? this.native.quorate() : this.lastQuorate;
  }

  /** The nodeids that are members of the group now (this node included once joined). */
  get members(): number[] {
    return [...this.pids.keys()].sort((a, b) => a - b);
  }

  /**
   * Joins the group; resolves once the first configuration change (the members found)
   * has been applied to the node table.
   * @throws CorosyncUnavailableError, CorosyncError, ConfigError (corosync's nodeid for
   *   this host is not the Lowcomms nodeid)
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new StateError(`membership start() in state '${this.state}'`);
    this.refreshNodelist();
    let native: NativeMembership;
    try {
      native = new (binding().Membership)(this.opts.group, (ev) => this.onEvent(ev));
    } catch (err) {
      throw mapError(err);
    }
    try {
      this.localNodeid = native.start();
    } catch (err) {
      native.stop();
      throw mapError(err);
    }
    this.native = native;
    this.state = 'running';
    if (this.localNodeid !== this.comms.nodeid) {
      await this.stop();
      throw new ConfigError(`corosync says this host is node ${this.localNodeid}, Lowcomms was given nodeid ${this.comms.nodeid}`);
    }
    this.lastQuorate = native.quorate();
    await this.firstChange.promise;
  }

  /** Leaves the group. The node table stays as it is. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.native?.stop();
    this.native = undefined;
    this.firstChange.resolve();
    await this.queue;
  }

  /** Lets the process exit while following the group (like socket.unref()). */
  unref(): this {
    this.native?.unref();
    return this;
  }

  ref(): this {
    this.native?.ref();
    return this;
  }

  private refreshNodelist(): void {
    const info = readCorosyncCluster();
    this.clusterNodes = new Map(info.nodes.map((n) => [n.nodeid, n]));
    this.prefer = preference(info);
  }

  private onEvent(ev: NativeMembershipEvent): void {
    this.queue = this.queue.then(() => this.apply(ev)).catch((err) => {
      this.emitError(err instanceof LowcommsError ? err : new CorosyncError(String(err), ''));
    });
  }

  private emitError(err: LowcommsError): void {
    // Like Lowcomms' 'error': informational, never a crash of the service.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private async apply(ev: NativeMembershipEvent): Promise<void> {
    switch (ev.type) {
      case 'quorum':
        this.lastQuorate = ev.quorate;
        this.emit('quorum', { quorate: ev.quorate, ringSeq: ev.ringSeq, view: [...ev.view] });
        return;
      case 'lost':
        this.state = 'stopped';
        this.native?.stop();
        this.native = undefined;
        this.firstChange.resolve();
        this.emit('lost', new CorosyncError(`lost the connection to corosync: ${ev.error}`, 'dispatch'));
        return;
      case 'confchg':
        await this.confchg(ev.members, ev.left, ev.joined);
        return;
    }
  }

  private async confchg(members: NativeCpgMember[], left: NativeCpgMember[], joined: NativeCpgMember[]): Promise<void> {
    const conv = (m: NativeCpgMember): CpgMember => ({ nodeid: m.nodeid, pid: m.pid, reason: REASONS[m.reason] ?? 'unknown' });
    const initial = this.initial;
    this.initial = false;
    const was = new Set(this.pids.keys());
    this.pids.clear();
    for (const m of members) {
      let s = this.pids.get(m.nodeid);
      if (!s) this.pids.set(m.nodeid, (s = new Set()));
      s.add(m.pid);
    }
    const self = this.comms.nodeid;
    if (initial) {
      // The table was the whole cluster; from now on it is the group's members.
      for (const nodeid of this.comms.nodes.nodeids())
        if (nodeid !== self && !this.pids.has(nodeid)) this.remember(nodeid) && this.comms.removeNode(nodeid);
      for (const nodeid of this.members) {
        if (nodeid === self) continue;
        const reason = joined.find((j) => j.nodeid === nodeid)?.reason ?? 1;
        if (this.comms.nodes.has(nodeid)) {
          this.emit('join', { nodeid, reason: REASONS[reason] ?? 'unknown', reset: false, initial: true });
        } else if (await this.add(nodeid)) {
          this.emit('join', { nodeid, reason: REASONS[reason] ?? 'unknown', reset: false, initial: true });
        }
      }
    } else {
      // A node left when its last process did; joined when its first one did.
      for (const l of left) {
        if (l.nodeid === self || this.pids.has(l.nodeid) || !was.has(l.nodeid)) continue;
        if (this.comms.nodes.has(l.nodeid)) {
          this.remember(l.nodeid);
          this.comms.removeNode(l.nodeid);
        }
        was.delete(l.nodeid);
        this.emit('leave', { nodeid: l.nodeid, reason: REASONS[l.reason] ?? 'unknown' });
      }
      for (const j of joined) {
        if (j.nodeid === self || was.has(j.nodeid)) continue;
        was.add(j.nodeid);
        const reason = REASONS[j.reason] ?? 'unknown';
        if (this.comms.nodes.has(j.nodeid)) {
          // Still in the table (its leave was never seen): its old session must go.
          this.comms.resetNode(j.nodeid);
          this.emit('join', { nodeid: j.nodeid, reason, reset: true, initial: false });
        } else if (await this.add(j.nodeid)) {
          this.emit('join', { nodeid: j.nodeid, reason, reset: false, initial: false });
        }
      }
    }
    this.emit('change', { members: this.members, left: left.map(conv), joined: joined.map(conv) });
    if (initial) this.firstChange.resolve();
  }

  private remember(nodeid: number): true {
    const n = this.comms.nodes.get(nodeid);
    if (n) this.removed.set(nodeid, { ...n });
    return true;
  }

  /** Adds a joined node with addresses from corosync's nodelist; false (and 'error') if it has none. */
  private async add(nodeid: number): Promise<boolean> {
    let c = this.clusterNodes.get(nodeid);
    if (!c) {
      // Not in the nodelist we read: corosync.conf may have been reloaded since.
      try {
        this.refreshNodelist();
      } catch (err) {
        this.emitError(err as LowcommsError);
      }
      c = this.clusterNodes.get(nodeid);
    }
    if (!c || c.addrs.length === 0) {
      this.emitError(new ConfigError(`node ${nodeid} joined group '${this.opts.group}' but has no address in corosync's nodelist`));
      return false;
    }
    try {
      const [conf] = await toConfigs([c], this.opts.resolve ?? {}, this.prefer);
      const before = this.removed.get(nodeid);
      const node: NodeConfig = { ...before, ...conf!, nodeid };
      if (this.state !== 'running') return false;
      this.comms.addNode(node);
      this.removed.delete(nodeid);
      return true;
    } catch (err) {
      this.emitError(err instanceof LowcommsError ? err : new ConfigError(String(err)));
      return false;
    }
  }
}
