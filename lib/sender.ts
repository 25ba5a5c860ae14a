/**
 * The send side of the JS/native boundary. A call into native code costs more than
 * framing a small message, so send() does not cross it per message: it appends a
 * record to a staging buffer, and one native call at the end of the current tick (or
 * when the buffer fills) moves the whole run into the per-node write queues, where the
 * native layer frames, sequences and sends it. Order is kept: one buffer, in call order.
 *
 * Record layout (native/lowcomms/lowcomms.h, Lowcomms::submit): le32 nodeid,
 * le32 lockspace, le16 body length, u8 cmd, u8 flags (1: body is a whole message), body.
 */
import type { NativeEngine } from '../binding';
import { DLM_HEADER_LEN, DLM_OPTS_LEN } from './dlm';

const RECORD_HEADER = 12;
const FLAG_RAW = 1;
const STAGING_BYTES = 256 * 1024;

/** What the sender knows of one node between looks at the native side. */
interface NodeSendState {
  /** Bytes held natively at the last look, plus what was staged since: only grows. */
  estimate: number;
  /** Bytes staged and not yet submitted. */
  staged: number;
}

export class Sender {
  private readonly buf = Buffer.allocUnsafe(STAGING_BYTES);
  private off = 0;
  private scheduled = false;
  private readonly nodes = new Map<number, NodeSendState>();
  // Senders stream to one node at a time: skip the map lookup for a repeat.
  private lastNodeid = -1;
  private lastState: NodeSendState | undefined;
  private readonly flushBound = () => this.flush();

  constructor(
    private readonly engine: NativeEngine,
    private readonly maxNodeBytes: number,
    private readonly onDropped: (nodeid: number, count: number) => void,
  ) {}

  /**
   * Stages one message. `body` is the bytes after the header, or (raw) the whole message.
   * Returns false when the node is over its limit (nothing staged).
   */
  stage(nodeid: number, lockspace: number, cmd: number, body: Uint8Array, raw: boolean): boolean {
    let st = this.lastState;
    if (nodeid !== this.lastNodeid || st === undefined) st = this.switchTo(nodeid);
    const n = body.length;
    const wire = (raw ? n : DLM_HEADER_LEN + n) + DLM_OPTS_LEN; // upper bound on the wire
    if (st.estimate + wire > this.maxNodeBytes) {
      // The estimate only grows; ask the native side what is really held (acks free it).
      st.estimate = this.engine.heldBytes(nodeid, st.staged + wire) + st.staged;
      if (st.estimate + wire > this.maxNodeBytes) return false;
    }
    if (this.off + RECORD_HEADER + n > STAGING_BYTES) this.flush();
    const b = this.buf;
    let o = this.off;
    b[o] = nodeid;
    b[o + 1] = nodeid >>> 8;
    b[o + 2] = nodeid >>> 16;
    b[o + 3] = nodeid >>> 24;
    b[o + 4] = lockspace;
    b[o + 5] = lockspace >>> 8;
    b[o + 6] = lockspace >>> 16;
    b[o + 7] = lockspace >>> 24;
    b[o + 8] = n;
    b[o + 9] = n >>> 8;
    b[o + 10] = cmd;
    b[o + 11] = raw ? FLAG_RAW : 0;
    o += RECORD_HEADER;
    if (n) b.set(body, o);
    this.off = o + n;
    st.estimate += wire;
    st.staged += wire;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushBound);
    }
    return true;
  }

  /** The state of a node other than the last one staged for, made the last one. */
  private switchTo(nodeid: number): NodeSendState {
    let st = this.nodes.get(nodeid);
    if (st === undefined) {
      st = { estimate: 0, staged: 0 };
      this.nodes.set(nodeid, st);
    }
    this.lastNodeid = nodeid;
    this.lastState = st;
    return st;
  }

  /** Moves everything staged into the native write queues. */
  flush(): void {
    this.scheduled = false;
    if (this.off === 0) return;
    const len = this.off;
    this.off = 0;
    for (const st of this.nodes.values()) st.staged = 0;
    const r = this.engine.submit(this.buf, len);
    if (typeof r === 'object') this.onDropped(r.nodeid, r.dropped);
  }

  /** Forget what we knew of a node (removed or reset). */
  forget(nodeid: number): void {
    this.nodes.delete(nodeid);
    this.lastNodeid = -1;
    this.lastState = undefined;
  }
}
