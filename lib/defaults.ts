/**
 * The default of every option, in one place: Lowcomms fills them in before the native
 * engine is made, and the engine has none of its own (the binding refuses an options
 * object with a key missing). The option docs in lib/lowcomms.ts quote these values.
 * Public (read-only), so that tools such as the bench print what they run with.
 */
import { DLM_DEFAULT_PORT } from './dlm';
import type { SctpOptions } from './lowcomms';

export const OPTION_DEFAULTS = deepFreeze({
  port: DLM_DEFAULT_PORT,
  /** Write-queue entry: a page, as the kernel. */
  entryBytesTcp: 4096,
  /** SCTP: an entry is one SCTP message; 64 KiB costs the stack 16x fewer messages than a page. */
  entryBytesSctp: 65536,
  /** TCP, 'immediate' flush: the end-of-tick flush may write an idle node's messages itself. */
  directWrite: true,
  /** With auth: every record after the handshake encrypted (AES-256-GCM), not only authenticated. */
  records: 'encrypt' as 'encrypt' | 'integrity',
  maxNodeBytes: 16 << 20,
  maxRxPendingBytes: 8 << 20,
  protocol: '3.2' as '3.1' | '3.2',
  tcpUserTimeoutMs: 10_000,
  /** The kernel retries every second. */
  connectRetryMaxMs: 1000,
  ackDelayMs: 20,
  /** Failover in about a second, not the kernel's minute; Linux SCTP does not autotune buffers. */
  sctp: {
    rtoInitialMs: 300,
    rtoMinMs: 100,
    rtoMaxMs: 1000,
    heartbeatMs: 1000,
    pathMaxRetrans: 2,
    pfRetrans: 0,
    assocMaxRetrans: 10,
    sndbuf: 4 << 20,
    rcvbuf: 4 << 20,
    sackDelayMs: 0,
  } satisfies Required<SctpOptions>,
});

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (v && typeof v === 'object') deepFreeze(v);
  return Object.freeze(o);
}
