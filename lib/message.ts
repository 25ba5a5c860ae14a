/**
 * Received messages as the application sees them. The native layer hands over one
 * Buffer per batch with a Uint32Array of (nodeid, offset, length) triples; a
 * MessageBatch reads fields out of it lazily, and DlmMessage bodies are views into
 * that same Buffer (no copy).
 */
import { DLM_HEADER_LEN } from './dlm';

/** One application message, delivered in order and exactly once per sending node. */
export interface DlmMessage {
  /** The node it came from (the connection's peer, checked against h_nodeid). */
  readonly nodeid: number;
  /** h_lockspace of the message header. */
  readonly lockspace: number;
  /** h_cmd: DLM_MSG (1), DLM_RCOM (2), or whatever the sender put there. */
  readonly cmd: number;
  /** h_version of the message header. */
  readonly version: number;
  /** The bytes after the 16-byte header (a view: copy it to keep it past the handler). */
  readonly body: Buffer;
  /** The whole message, header included (a view). */
  readonly raw: Buffer;
}

export class MessageBatch implements Iterable<DlmMessage> {
  /** Every message's bytes, back to back. */
  readonly data: Buffer;
  /** (nodeid, offset, length) per message. */
  readonly index: Uint32Array;

  constructor(data: Buffer, index: Uint32Array) {
    this.data = data;
    this.index = index;
  }

  /** Number of messages in the batch. */
  get length(): number {
    return this.index.length / 3;
  }

  /** Sender of message i. */
  nodeid(i: number): number {
    return this.index[i * 3]!;
  }

  /** Whole message i (header included), as a view. */
  raw(i: number): Buffer {
    const off = this.index[i * 3 + 1]!;
    return this.data.subarray(off, off + this.index[i * 3 + 2]!);
  }

  /** Message i with its header fields read out. */
  message(i: number): DlmMessage {
    const off = this.index[i * 3 + 1]!;
    const len = this.index[i * 3 + 2]!;
    const d = this.data;
    return {
      nodeid: this.index[i * 3]!,
      version: d.readUInt32LE(off),
      lockspace: d.readUInt32LE(off + 4),
      cmd: d[off + 14]!,
      body: d.subarray(off + DLM_HEADER_LEN, off + len),
      raw: d.subarray(off, off + len),
    };
  }

  *[Symbol.iterator](): Iterator<DlmMessage> {
    for (let i = 0; i < this.length; i++) yield this.message(i);
  }
}
