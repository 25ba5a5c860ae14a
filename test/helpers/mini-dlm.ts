/**
 * Test code, not product: the least of a DLM node that lets a kernel DLM share a
 * lockspace with a lowcomms node. It answers recovery (RCOM STATUS with every
 * recovery stage done, RCOM NAMES with an empty directory) and serves as directory
 * node: a LOOKUP names the requester as master the first time a resource is seen.
 * Wire layouts: docs/protocol.md ("The DLM wire format", "Kernel behaviour lowcomms relies on").
 */
import { DLM_MSG, DLM_RCOM, type DlmMessage, type Lowcomms, type NodeConfig } from '../../lib';

const RCOM_STATUS = 1;
const RCOM_NAMES = 2;
const RCOM_STATUS_REPLY = 5;
const RCOM_NAMES_REPLY = 6;
const MSG_LOOKUP = 11;
const MSG_REMOVE = 12;
const MSG_LOOKUP_REPLY = 13;
/** Every DLM_RS_* recovery status bit: NODES, NODES_ALL, DIR, DIR_ALL, LOCKS, LOCKS_ALL, DONE, DONE_ALL. */
const RS_ALL = 0xff;
const RCOM_LEN = 48;
const MSG_LEN = 88;
const USER_LVB_LEN = 32;

/**
 * The node table of a lowcomms node sharing a cluster with the kernel DLM: the one
 * place that says which peer is a kernel (if lowcomms grows a per-node flag that keeps
 * lowcomms-only handshakes away from kernel peers, it is set here).
 */
export function kernelClusterNodes(kernel: { nodeid: number; addr: string }, us: { nodeid: number; addr: string }): NodeConfig[] {
  return [
    { nodeid: kernel.nodeid, addrs: [kernel.addr], kernel: true }, // pure DLM: no lowcomms handshake
    { nodeid: us.nodeid, addrs: [us.addr] },
  ];
}

export interface MiniDlmCounts {
  status: number;
  names: number;
  lookups: number;
  removes: number;
  other: number;
  bad: string[];
}

export class MiniDlm {
  readonly counts: MiniDlmCounts = { status: 0, names: 0, lookups: 0, removes: 0, other: 0, bad: [] };
  /** Directory: resource name -> master nodeid. */
  readonly directory = new Map<string, number>();
  /** Names looked up, in arrival order. */
  readonly looked: string[] = [];
  /** When set, replies go out with this transform (fault injection). */
  mangle: ((reply: Buffer) => Buffer) | undefined;

  constructor(private readonly comms: Lowcomms) {
    comms.onMessage((m) => this.receive(m));
  }

  private reply(to: number, buf: Buffer): void {
    const out = this.mangle ? this.mangle(buf) : buf;
    if (!this.comms.send(to, out)) this.counts.bad.push(`reply to ${to} refused by backpressure`);
  }

  private header(out: Buffer, lockspace: number, cmd: number): void {
    out.writeUInt32LE(0x00030002, 0);
    out.writeUInt32LE(lockspace, 4);
    out.writeUInt32LE(this.comms.nodeid, 8);
    out.writeUInt16LE(out.length, 12);
    out[14] = cmd;
  }

  private receive(m: DlmMessage): void {
    const raw = m.raw;
    if (m.cmd === DLM_RCOM && raw.length >= RCOM_LEN) return this.rcom(m.nodeid, Buffer.from(raw));
    if (m.cmd === DLM_MSG && raw.length >= MSG_LEN) return this.message(m.nodeid, Buffer.from(raw));
    this.counts.bad.push(`unexpected cmd ${m.cmd} length ${raw.length} from ${m.nodeid}`);
  }

  private rcom(from: number, rc: Buffer): void {
    const type = rc.readUInt32LE(16);
    let extra: Buffer;
    let replyType: number;
    let result = 0;
    if (type === RCOM_STATUS) {
      this.counts.status++;
      replyType = RCOM_STATUS_REPLY;
      result = RS_ALL;
      // struct rcom_config: lvblen, lsflags, our_slot, num_slots, generation, unused.
      extra = Buffer.alloc(32);
      extra.writeUInt32LE(USER_LVB_LEN, 0);
    } else if (type === RCOM_NAMES) {
      this.counts.names++;
      replyType = RCOM_NAMES_REPLY;
      extra = Buffer.from([0xff, 0xff]); // be16 0xFFFF: no names here, end of the walk
    } else {
      this.counts.other++;
      this.counts.bad.push(`unexpected rcom type ${type} from ${from}`);
      return;
    }
    const out = Buffer.alloc(RCOM_LEN + extra.length);
    this.header(out, rc.readUInt32LE(4), DLM_RCOM);
    out.writeUInt32LE(replyType, 16);
    out.writeUInt32LE(result, 20);
    rc.copy(out, 24, 24, 32); // rc_id echoed
    out.writeBigUInt64LE(0n, 32); // rc_seq
    rc.copy(out, 40, 32, 40); // rc_seq_reply = the request's rc_seq
    extra.copy(out, RCOM_LEN);
    this.reply(from, out);
  }

  private message(from: number, ms: Buffer): void {
    const type = ms.readUInt32LE(16);
    const name = ms.subarray(MSG_LEN).toString('latin1');
    if (type === MSG_REMOVE) {
      this.counts.removes++;
      this.directory.delete(name);
      return;
    }
    if (type !== MSG_LOOKUP) {
      this.counts.other++;
      this.counts.bad.push(`unexpected message type ${type} from ${from}`);
      return;
    }
    this.counts.lookups++;
    this.looked.push(name);
    let master = this.directory.get(name);
    if (master === undefined) {
      master = from;
      this.directory.set(name, master);
    }
    const out = Buffer.alloc(MSG_LEN);
    this.header(out, ms.readUInt32LE(4), DLM_MSG);
    out.writeUInt32LE(MSG_LOOKUP_REPLY, 16);
    out.writeUInt32LE(master, 20); // m_nodeid: the master
    ms.copy(out, 28, 28, 32); // m_lkid: the requester's lock
    ms.copy(out, 60, 60, 64); // m_hash
    this.reply(from, out);
  }
}
