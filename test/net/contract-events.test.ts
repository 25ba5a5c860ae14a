/**
 * The API contract (issue 13): connection events tell a peer that is not up yet, and an
 * orderly close, from a fault. Run on every transport of the run (SCTP in the guest).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Lowcomms, type LowcommsError } from '../../lib';
import { nodeList, startCluster, until } from '../helpers/cluster';
import { testPort, testTransports } from '../helpers/transports';

const ECONNREFUSED = 111;
const ETIMEDOUT = 110;

for (const transport of testTransports()) {
  describe(`connection events over ${transport}`, () => {
    test("a peer not up yet gives 'connecting', not 'error'; the message arrives once it is up", async (t) => {
      const port = testPort();
      const nodes = nodeList(2);
      const n1 = new Lowcomms({ nodeid: 1, nodes, port, transport });
      const n2 = new Lowcomms({ nodeid: 2, nodes, port, transport });
      t.after(() => Promise.all([n1.close({ flush: false }), n2.close({ flush: false })]));
      const errors: LowcommsError[] = [];
      const connecting: Array<{ nodeid: number; reason: string; errno: number }> = [];
      n1.on('error', (e) => errors.push(e));
      n1.on('connecting', (e) => connecting.push(e));
      await n1.start();
      n1.send(2, { body: 'early' });
      // SCTP: the association setup to a closed port ends at its deadline (a few seconds).
      await until(() => connecting.length > 0, 15_000, "a 'connecting' event");
      assert.equal(connecting[0]!.nodeid, 2);
      if (transport === 'tcp') {
        assert.equal(connecting[0]!.errno, ECONNREFUSED);
        assert.match(connecting[0]!.reason, /refused/i);
      } else {
        // The setup is refused (ABORT: CANT_STR_ASSOC), or runs into its deadline.
        assert.ok([ECONNREFUSED, ETIMEDOUT].includes(connecting[0]!.errno), JSON.stringify(connecting[0]));
      }
      const got: string[] = [];
      n2.onMessage((m) => got.push(m.body.toString()));
      await n2.start();
      await until(() => got.length === 1, 15_000, 'the early message');
      assert.deepEqual(errors, [], 'no error event');
    });

    test("an orderly close by the peer is 'closed by peer' (errno 0), not a reset", async (t) => {
      const cl = await startCluster(t, { n: 2, transport });
      const n1 = cl.get(1);
      const got: string[] = [];
      cl.get(2).onMessage((m) => got.push(m.body.toString()));
      n1.onMessage(() => undefined);
      const disconnects: Array<{ nodeid: number; reason: string; errno: number }> = [];
      n1.on('disconnect', (e) => disconnects.push(e));
      n1.send(2, { body: 'hello' });
      cl.get(2).send(1, { body: 'hello back' });
      await until(() => got.length === 1, 5000, 'the message');
      await until(() => n1.stats().nodes[0]!.unacked === 0, 5000, 'the ack');
      await cl.get(2).close();
      await until(() => disconnects.length > 0, 5000, "a 'disconnect' event");
      assert.equal(disconnects[0]!.errno, 0, JSON.stringify(disconnects[0]));
      assert.equal(disconnects[0]!.reason, 'closed by peer');
    });
  });
}
