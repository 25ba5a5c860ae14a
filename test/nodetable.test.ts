import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, NodeTable, UnknownNodeError } from '../lib';
import { parseCorosyncConf } from '../lib/corosync';
import { normalizeAddress } from '../lib/nodetable';

const TWO_RINGS = `
# a knet cluster with two links
totem {
    version: 2
    cluster_name: lockbox
    transport: knet
    interface {
        linknumber: 0
    }
    interface {
        linknumber: 1
    }
}

nodelist {
    node {
        ring0_addr: 10.0.0.1
        ring1_addr: 10.1.0.1
        name: alpha
        nodeid: 1
    }
    node {
        ring0_addr: 10.0.0.2   # trailing comment
        ring1_addr: 10.1.0.2
        name: beta
        nodeid: 2
    }
}
quorum {
    provider: corosync_votequorum
}
`;

describe('NodeTable', () => {
  test('add() validates and normalises; get/require/has/size/nodeids', () => {
    const t = new NodeTable();
    const n = t.add({ nodeid: 7, addrs: ['2001:DB8::0:1', '2001:db8::2'] });
    assert.deepEqual(n.addrs, ['2001:db8::1', '2001:db8::2']);
    assert.ok(Object.isFrozen(n));
    assert.equal(t.family, 6);
    assert.equal(t.get(7), n);
    assert.equal(t.require(7), n);
    assert.throws(() => t.require(8), UnknownNodeError);
    assert.equal(t.has(7), true);
    assert.equal(t.size, 1);
    t.add({ nodeid: 3, addrs: ['::1'] });
    assert.deepEqual(t.nodeids(), [3, 7]);
  });

  test('every validation rule is a ConfigError naming the node', () => {
    const t = new NodeTable([{ nodeid: 1, addrs: ['10.0.0.1'] }]);
    const bad: Array<[unknown, RegExp]> = [
      [{ nodeid: 0, addrs: ['10.0.0.9'] }, /nodeid/],
      [{ nodeid: 2 ** 32, addrs: ['10.0.0.9'] }, /nodeid/],
      [{ nodeid: 1, addrs: ['10.0.0.9'] }, /already/],
      [{ nodeid: 2, addrs: [] }, /at least one/],
      [{ nodeid: 2, addrs: Array.from({ length: 9 }, (_, i) => `10.9.0.${i}`) }, /at most 8/],
      [{ nodeid: 2, addrs: ['node-b.example'] }, /not an IP/],
      [{ nodeid: 2, addrs: ['fe80::1%eth0'] }, /zone/],
      [{ nodeid: 2, addrs: ['10.0.0.2', '10.0.0.2'] }, /twice/],
      [{ nodeid: 2, addrs: ['10.0.0.1'] }, /belongs to node 1/],
      [{ nodeid: 2, addrs: ['::2'] }, /one family/],
      [{ nodeid: 2, addrs: ['10.0.0.2'], mark: -1 }, /mark/],
    ];
    for (const [node, re] of bad) assert.throws(() => t.add(node as never), (e: unknown) => e instanceof ConfigError && re.test(e.message), String(re));
    assert.equal(t.size, 1, 'a refused node changes nothing');
  });

  test('nodeidOf() finds a node by any textual form of its address; remove() forgets it', () => {
    const t = new NodeTable([{ nodeid: 4, addrs: ['192.168.7.4'] }]);
    assert.equal(t.nodeidOf('192.168.7.4'), 4);
    assert.equal(t.nodeidOf('::ffff:192.168.7.4'), 4, 'IPv4-mapped');
    assert.equal(t.nodeidOf('192.168.7.5'), undefined);
    assert.equal(t.nodeidOf('garbage'), undefined);
    assert.equal(t.remove(4), true);
    assert.equal(t.remove(4), false);
    assert.equal(t.nodeidOf('192.168.7.4'), undefined);
    assert.equal(t.family, undefined);
  });

  test('normalizeAddress()', () => {
    assert.deepEqual(normalizeAddress('2001:0DB8:0000::0001'), { addr: '2001:db8::1', family: 6 });
    assert.deepEqual(normalizeAddress('::ffff:c0a8:0101'), { addr: '192.168.1.1', family: 4 });
    assert.throws(() => normalizeAddress('1.2.3'), ConfigError);
  });

  test('fromJson() takes both shapes; toJSON() round-trips', () => {
    const a = NodeTable.fromJson('[{"nodeid":1,"addrs":["10.0.0.1"]}]');
    const b = NodeTable.fromJson('{"nodes":[{"nodeid":1,"addrs":["10.0.0.1"],"mark":5}]}');
    assert.equal(a.get(1)!.addrs[0], '10.0.0.1');
    assert.equal(b.get(1)!.mark, 5);
    assert.deepEqual(NodeTable.fromJson(JSON.stringify(b)).toJSON(), b.toJSON());
    assert.throws(() => NodeTable.fromJson('{'), ConfigError);
    assert.throws(() => NodeTable.fromJson('{"x":1}'), ConfigError);
  });

  test('fromCorosyncConf() reads the nodelist, rings in order', () => {
    const t = NodeTable.fromCorosyncConf(TWO_RINGS);
    assert.deepEqual(t.get(1), { nodeid: 1, addrs: ['10.0.0.1', '10.1.0.1'], name: 'alpha' });
    assert.deepEqual(t.get(2)!.addrs, ['10.0.0.2', '10.1.0.2']);
  });

  test('load() reads corosync.conf or JSON from a file, resolving host names', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-nt-'));
    try {
      const conf = path.join(dir, 'corosync.conf');
      fs.writeFileSync(conf, 'nodelist {\n node {\n  ring0_addr: localhost\n  nodeid: 1\n }\n node {\n  ring0_addr: 127.0.0.2\n  nodeid: 2\n }\n}\n');
      const t = await NodeTable.load(conf);
      assert.deepEqual(t.get(1)!.addrs, ['127.0.0.1']);
      await assert.rejects(NodeTable.load(conf, { resolve: false }), ConfigError, 'names need resolve');
      const json = path.join(dir, 'nodes.json');
      fs.writeFileSync(json, JSON.stringify({ nodes: [{ nodeid: 9, addrs: ['127.0.0.9'] }] }));
      assert.deepEqual((await NodeTable.load(json)).nodeids(), [9]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('corosync.conf parser', () => {
  test('cluster settings: name, transport, rrp_mode, links', () => {
    const c = parseCorosyncConf(TWO_RINGS);
    assert.equal(c.clusterName, 'lockbox');
    assert.equal(c.transport, 'knet');
    assert.equal(c.links, 2);
    assert.equal(c.nodes.length, 2);
    const udpu = parseCorosyncConf('totem {\n transport: udpu\n rrp_mode: passive\n}\nnodelist {\n node {\n ring0_addr: "10.0.0.1"\n nodeid: 1\n }\n}');
    assert.equal(udpu.rrpMode, 'passive');
    assert.deepEqual(udpu.nodes[0]!.addrs, ['10.0.0.1'], 'quotes tolerated');
  });

  test('syntax errors and a node without nodeid name their line', () => {
    assert.throws(() => parseCorosyncConf('totem {\n  what is this\n}'), /line 2/);
    assert.throws(() => parseCorosyncConf('totem {\n'), /line 1 is never closed/);
    assert.throws(() => parseCorosyncConf('}\n'), /line 1/);
    assert.throws(() => parseCorosyncConf('nodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}'), /line 2: node without a nodeid/);
    assert.throws(() => parseCorosyncConf('nodelist {\n node {\n  nodeid: 3\n }\n}'), /no ringN_addr/);
  });
});
