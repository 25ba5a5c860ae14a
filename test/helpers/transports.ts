/**
 * Which transports this test run covers. LOWCOMMS_TEST_TRANSPORTS=tcp,sctp chooses;
 * by default TCP, plus SCTP when this kernel has it. A transport that is asked for
 * and unavailable FAILS the run: SCTP tests are never skipped silently.
 */
import { loadBinding } from '../../binding';
import type { TransportName } from '../../lib';

export function sctpAvailable(): boolean {
  return loadBinding().sctpAvailable(4).ok;
}

export function testTransports(): TransportName[] {
  const env = process.env.LOWCOMMS_TEST_TRANSPORTS;
  if (env) {
    const list = env.split(',').map((s) => s.trim()).filter(Boolean) as TransportName[];
    for (const t of list) {
      if (t !== 'tcp' && t !== 'sctp') throw new Error(`LOWCOMMS_TEST_TRANSPORTS: unknown transport ${t}`);
      if (t === 'sctp' && !sctpAvailable())
        throw new Error('LOWCOMMS_TEST_TRANSPORTS asks for sctp but this kernel has none');
    }
    return list;
  }
  return sctpAvailable() ? ['tcp', 'sctp'] : ['tcp'];
}

/** A port per test file and transport, away from the ephemeral range. */
export function testPort(): number {
  return 20000 + Math.floor(Math.random() * 10000);
}
