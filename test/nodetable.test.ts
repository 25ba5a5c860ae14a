import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, UnknownNodeError } from '../lib/errors';
import { type HostLookup, MAX_ADDRS_PER_NODE, type NodeConfig, NodeTable, normalizeAddress } from '../lib/nodetable';

const TWO_RINGS = `# two links
totem {
    cluster_name: lockbox
    transport: knet
}

nodelist {
    node {
        ring0_addr: 10.0.0.1
        ring1_addr: 10.1.0.1
        name: alpha
        nodeid: 1
    }
    node {
        ring0_addr: 10.0.0.2
        ring1_addr: 10.1.0.2
        name: beta
        nodeid: 2
    }
}
`;

/** assert.throws/rejects matcher: a ConfigError whose message matches every regexp. */
function configError(...res: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    for (const re of res) assert.match(e.message, re);
    return true;
  };
}

/** A table with node 1 at 10.0.0.1, to test what add() refuses next to it. */
function base(): NodeTable {
  return new NodeTable([{ nodeid: 1, addrs: ['10.0.0.1'] }]);
}

/** add() must refuse `node` with a ConfigError matching `res` and leave `t` as it was. */
function refuses(t: NodeTable, node: unknown, ...res: RegExp[]): void {
  const before = JSON.stringify(t.toJSON());
  assert.throws(() => t.add(node as NodeConfig), configError(...res));
  assert.equal(JSON.stringify(t.toJSON()), before, 'a refused node changes nothing');
}

describe('normalizeAddress()', () => {
  test('IPv4 as is; IPv6 to RFC 5952 text', () => {
    assert.deepEqual(normalizeAddress('192.168.1.1'), { addr: '192.168.1.1', family: 4 });
    const six: Array<[string, string]> = [
      ['2001:0DB8:0000::0001', '2001:db8::1'],
      ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of equal runs
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['FE80:0:0:0:0:0:0:0', 'fe80::'],
      ['::1.2.3.4', '::102:304'], // IPv4-compatible is plain IPv6
      ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ];
    for (const [given, canon] of six) assert.deepEqual(normalizeAddress(given), { addr: canon, family: 6 }, given);
  });

  test('an IPv4-mapped IPv6 address is the IPv4 address', () => {
    assert.deepEqual(normalizeAddress('::ffff:192.168.1.1'), { addr: '192.168.1.1', family: 4 });
    assert.deepEqual(normalizeAddress('::FFFF:c0a8:0101'), { addr: '192.168.1.1', family: 4 });
    assert.deepEqual(normalizeAddress('0:0:0:0:0:ffff:a00:1'), { addr: '10.0.0.1', family: 4 });
  });

  test('agrees with the WHATWG URL serialiser on random addresses in random spellings', () => {
    let seed = 12345;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    for (let i = 0; i < 2000; i++) {
      // Mostly zeros, so that runs of zero groups of every length occur.
      const g = Array.from({ length: 8 }, () => (rnd(3) === 0 ? rnd(0x10000) : 0));
      if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) continue;
      const full = g.map((x) => x.toString(16).padStart(rnd(2) ? 4 : 1, '0')).map((x) => (rnd(2) ? x.toUpperCase() : x)).join(':');
      const expected = new URL(`http://[${full}]/`).hostname.slice(1, -1);
      assert.deepEqual(normalizeAddress(full), { addr: expected, family: 6 }, full);
      assert.deepEqual(normalizeAddress(expected), { addr: expected, family: 6 }, `${expected} is a fixed point`);
    }
  });

  test('not an IP literal, or with a zone id: ConfigError naming the value', () => {
    for (const bad of ['1.2.3', '010.0.0.1', 'node-a', '', ' 10.0.0.1', '10.0.0.1:21064', '[::1]', '2001:db8::/64'])
      assert.throws(() => normalizeAddress(bad), configError(/not an IP address/), JSON.stringify(bad));
    assert.throws(() => normalizeAddress('fe80::1%eth0'), configError(/'fe80::1%eth0'/, /zone ids are not supported/));
    assert.throws(() => normalizeAddress(42 as unknown as string), configError(/must be a string/));
  });
});

describe('NodeTable', () => {
  test('constructor: empty, or from any iterable of nodes; a bad node throws', () => {
    const empty = new NodeTable();
    assert.equal(empty.size, 0);
    assert.equal(empty.family, undefined);
    function* gen(): Generator<NodeConfig> {
      yield { nodeid: 2, addrs: ['10.0.0.2'] };
      yield { nodeid: 1, addrs: ['10.0.0.1'] };
    }
    assert.deepEqual(new NodeTable(gen()).nodeids(), [1, 2]);
    assert.throws(() => new NodeTable([{ nodeid: 1, addrs: ['x'] }]), ConfigError);
  });

  test('add() returns a normalised, frozen copy that does not alias the input', () => {
    const t = new NodeTable();
    const input = { nodeid: 7, addrs: ['2001:DB8::0:1', '2001:db8:0:0::2'], mark: 3, name: 'seven' };
    const n = t.add(input);
    assert.deepEqual(n, { nodeid: 7, addrs: ['2001:db8::1', '2001:db8::2'], mark: 3, name: 'seven' });
    assert.ok(Object.isFrozen(n));
    assert.ok(Object.isFrozen(n.addrs));
    assert.notEqual(n.addrs, input.addrs);
    input.addrs.push('2001:db8::3');
    assert.equal(t.get(7)!.addrs.length, 2);
    assert.deepEqual(input.addrs, ['2001:DB8::0:1', '2001:db8:0:0::2', '2001:db8::3'], 'input untouched');
    assert.equal(t.family, 6);
    const bare = t.add({ nodeid: 8, addrs: ['::8'] });
    assert.deepEqual(Object.keys(bare), ['nodeid', 'addrs'], 'absent mark and name stay absent');
  });

  test('nodeid: an integer in 1..0xFFFFFFFF', () => {
    const t = base();
    for (const bad of [0, -1, 1.5, 2 ** 32, NaN, Infinity, '2', null, undefined])
      refuses(t, { nodeid: bad, addrs: ['10.0.0.9'] }, /nodeid must be an integer in 1\.\.4294967295/, new RegExp(`node '?${String(bad)}'?:`));
    assert.equal(t.add({ nodeid: 0xffffffff, addrs: ['10.0.0.9'] }).nodeid, 0xffffffff);
  });

  test('a nodeid already in the table', () => {
    refuses(base(), { nodeid: 1, addrs: ['10.0.0.9'] }, /node 1:/, /already in the table/);
  });

  test('addrs: an array of 1..8 addresses', () => {
    const t = base();
    refuses(t, { nodeid: 2, addrs: '10.0.0.2' }, /node 2:/, /must be an array/, /'10\.0\.0\.2'/);
    refuses(t, { nodeid: 2 }, /node 2:/, /must be an array/);
    refuses(t, { nodeid: 2, addrs: [] }, /node 2:/, /at least one address/);
    const nine = Array.from({ length: MAX_ADDRS_PER_NODE + 1 }, (_, i) => `10.9.0.${i}`);
    refuses(t, { nodeid: 2, addrs: nine }, /node 2:/, /9 addresses, at most 8/);
    assert.equal(t.add({ nodeid: 2, addrs: nine.slice(0, 8) }).addrs.length, MAX_ADDRS_PER_NODE);
  });

  test('every address an IP literal, without zone id', () => {
    const t = base();
    refuses(t, { nodeid: 2, addrs: ['10.0.0.2', 'node-b.example'] }, /node 2:/, /'node-b\.example' is not an IP address/);
    refuses(t, { nodeid: 2, addrs: [42] }, /node 2:/, /must be a string/);
    refuses(new NodeTable(), { nodeid: 2, addrs: ['fe80::1%eth0'] }, /node 2:/, /'fe80::1%eth0'/, /zone ids/);
  });

  test('no address twice within a node, in any spelling', () => {
    refuses(base(), { nodeid: 2, addrs: ['10.0.0.2', '10.0.0.2'] }, /node 2:/, /'10\.0\.0\.2' given twice/);
    refuses(new NodeTable(), { nodeid: 2, addrs: ['2001:db8::1', '2001:DB8:0::1'] }, /node 2:/, /'2001:DB8:0::1' \(2001:db8::1\) given twice/);
  });

  test('no address shared with another node, in any spelling', () => {
    refuses(base(), { nodeid: 2, addrs: ['10.0.0.2', '10.0.0.1'] }, /node 2:/, /'10\.0\.0\.1' already belongs to node 1/);
    refuses(base(), { nodeid: 2, addrs: ['::ffff:10.0.0.1'] }, /node 2:/, /\(10\.0\.0\.1\) already belongs to node 1/);
  });

  test('one address family for the whole table', () => {
    refuses(base(), { nodeid: 2, addrs: ['fd00::2'] }, /node 2:/, /'fd00::2' is IPv6, the table is IPv4/);
    refuses(new NodeTable(), { nodeid: 2, addrs: ['10.0.0.2', 'fd00::2'] }, /node 2:/, /IPv6, the table is IPv4/);
    const v6 = new NodeTable([{ nodeid: 1, addrs: ['fd00::1'] }]);
    refuses(v6, { nodeid: 2, addrs: ['::ffff:10.0.0.2'] }, /node 2:/, /IPv4, the table is IPv6/);
    assert.equal(v6.family, 6);
  });

  test('mark: an integer in 0..0xFFFFFFFF; name: a non-empty string', () => {
    const t = base();
    for (const bad of [-1, 2 ** 32, 1.5, '5', null])
      refuses(t, { nodeid: 2, addrs: ['10.0.0.2'], mark: bad }, /node 2:/, new RegExp(`mark '?${String(bad)}'? is not an integer`));
    assert.equal(t.add({ nodeid: 2, addrs: ['10.0.0.2'], mark: 0 }).mark, 0);
    assert.equal(t.add({ nodeid: 3, addrs: ['10.0.0.3'], mark: 0xffffffff }).mark, 0xffffffff);
    refuses(t, { nodeid: 4, addrs: ['10.0.0.4'], name: 7 }, /node 4:/, /name 7/);
    refuses(t, { nodeid: 4, addrs: ['10.0.0.4'], name: '' }, /node 4:/, /name ''/);
  });

  test('not an object', () => {
    refuses(base(), null, /must be an object/);
    refuses(base(), '10.0.0.1', /must be an object/);
  });

  test('remove(): forgets the node and its addresses; the family once empty', () => {
    const t = new NodeTable([{ nodeid: 4, addrs: ['192.168.7.4', '192.168.8.4'] }]);
    assert.equal(t.remove(4), true);
    assert.equal(t.remove(4), false);
    assert.equal(t.has(4), false);
    assert.equal(t.nodeidOf('192.168.7.4'), undefined);
    assert.equal(t.family, undefined);
    t.add({ nodeid: 5, addrs: ['192.168.7.4'] }); // its addresses are free again
    t.add({ nodeid: 6, addrs: ['192.168.6.6'] });
    t.remove(5);
    assert.equal(t.family, 4, 'still IPv4 while a node is left');
    t.remove(6);
    t.add({ nodeid: 7, addrs: ['fd00::7'] });
    assert.equal(t.family, 6, 'an emptied table takes a new family');
  });

  test('get(), has()', () => {
    const t = base();
    assert.deepEqual(t.get(1), { nodeid: 1, addrs: ['10.0.0.1'] });
    assert.equal(t.get(2), undefined);
    assert.equal(t.has(1), true);
    assert.equal(t.has(2), false);
  });

  test('require(): the node, or an UnknownNodeError carrying the nodeid', () => {
    const t = base();
    assert.equal(t.require(1), t.get(1));
    assert.throws(
      () => t.require(9),
      (e: unknown) => e instanceof UnknownNodeError && e.nodeid === 9 && e.code === 'ERR_LOWCOMMS_UNKNOWN_NODE',
    );
  });

  test('nodeidOf(): any spelling of an address; IPv4-mapped finds the IPv4 node', () => {
    const v4 = new NodeTable([
      { nodeid: 4, addrs: ['192.168.7.4', '192.168.8.4'] },
      { nodeid: 5, addrs: ['192.168.7.5'] },
    ]);
    assert.equal(v4.nodeidOf('192.168.7.4'), 4);
    assert.equal(v4.nodeidOf('192.168.8.4'), 4, 'every address of a node');
    assert.equal(v4.nodeidOf('192.168.7.5'), 5);
    assert.equal(v4.nodeidOf('::ffff:192.168.7.4'), 4);
    assert.equal(v4.nodeidOf('::FFFF:c0a8:0704'), 4);
    assert.equal(v4.nodeidOf('192.168.7.6'), undefined);
    assert.equal(v4.nodeidOf('garbage'), undefined);
    assert.equal(v4.nodeidOf('fe80::1%eth0'), undefined);
    const v6 = new NodeTable([{ nodeid: 6, addrs: ['2001:db8::6'] }]);
    assert.equal(v6.nodeidOf('2001:DB8:0:0:0:0:0:6'), 6);
    assert.equal(v6.nodeidOf('2001:0db8::0006'), 6);
    assert.equal(v6.nodeidOf('2001:db8::7'), undefined);
  });

  test('size, family', () => {
    const t = new NodeTable();
    assert.equal(t.size, 0);
    assert.equal(t.family, undefined);
    t.add({ nodeid: 1, addrs: ['10.0.0.1'] });
    t.add({ nodeid: 2, addrs: ['10.0.0.2'] });
    assert.equal(t.size, 2);
    assert.equal(t.family, 4);
    assert.equal(new NodeTable([{ nodeid: 1, addrs: ['::1'] }]).family, 6);
  });

  test('nodeids() ascending; iteration in the order added', () => {
    const t = new NodeTable([30, 4, 200, 1].map((id) => ({ nodeid: id, addrs: [`10.0.0.${id}`] })));
    assert.deepEqual(t.nodeids(), [1, 4, 30, 200]);
    assert.deepEqual([...t].map((n) => n.nodeid), [30, 4, 200, 1]);
  });

  test('toJSON(): { nodes } sorted by nodeid, mutable copies; fromJson() reads it back', () => {
    const t = new NodeTable([
      { nodeid: 2, addrs: ['10.0.0.2'], name: 'b' },
      { nodeid: 1, addrs: ['10.0.0.1', '10.1.0.1'], mark: 5 },
    ]);
    const j = t.toJSON();
    assert.deepEqual(j, {
      nodes: [
        { nodeid: 1, addrs: ['10.0.0.1', '10.1.0.1'], mark: 5 },
        { nodeid: 2, addrs: ['10.0.0.2'], name: 'b' },
      ],
    });
    assert.ok(!Object.isFrozen(j.nodes[0]!.addrs));
    assert.deepEqual(NodeTable.fromJson(JSON.stringify(t)).toJSON(), j);
  });

  test('fromJson(): a bare array or { nodes: [...] }', () => {
    const a = NodeTable.fromJson('[{"nodeid":1,"addrs":["10.0.0.1"]}]');
    const b = NodeTable.fromJson('{"cluster":"x","nodes":[{"nodeid":1,"addrs":["10.0.0.1"],"mark":5,"name":"one"}]}');
    assert.deepEqual(a.get(1), { nodeid: 1, addrs: ['10.0.0.1'] });
    assert.deepEqual(b.get(1), { nodeid: 1, addrs: ['10.0.0.1'], mark: 5, name: 'one' });
  });

  test('fromJson(): bad JSON, a bad shape or a bad node are ConfigErrors', () => {
    assert.throws(() => NodeTable.fromJson('{'), configError(/node table JSON/));
    assert.throws(() => NodeTable.fromJson('{"x":1}'), configError(/expected/));
    assert.throws(() => NodeTable.fromJson('null'), configError(/expected/));
    assert.throws(() => NodeTable.fromJson('[1]'), configError(/nodes\[0\] is not an object/));
    assert.throws(() => NodeTable.fromJson('[{"nodeid":1,"addrs":["10.0.0.1","::1"]}]'), configError(/node 1:/, /one family/));
  });

  test('fromCorosyncConf(): the nodelist, rings in order', () => {
    const t = NodeTable.fromCorosyncConf(TWO_RINGS);
    assert.deepEqual(t.get(1), { nodeid: 1, addrs: ['10.0.0.1', '10.1.0.1'], name: 'alpha' });
    assert.deepEqual(t.get(2), { nodeid: 2, addrs: ['10.0.0.2', '10.1.0.2'], name: 'beta' });
    assert.equal(t.nodeidOf('10.1.0.2'), 2);
  });

  test('fromCorosyncConf(): host names refused, node errors carry the line', () => {
    assert.throws(
      () => NodeTable.fromCorosyncConf('nodelist {\n node {\n  nodeid: 1\n  ring0_addr: node-a\n }\n}\n'),
      configError(/line 2/, /node 1:/, /'node-a' is not an IP address/),
    );
    assert.throws(
      () => NodeTable.fromCorosyncConf(TWO_RINGS.replace('10.1.0.2', '10.1.0.1')),
      configError(/corosync\.conf line 14/, /node 2:/, /already belongs to node 1/),
    );
    assert.throws(() => NodeTable.fromCorosyncConf('nodelist {\n'), configError(/never closed/));
  });
});

describe('NodeTable.load()', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-nodetable-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const write = (text: string, name = `f${n++}.conf`) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const conf = (totem: string, ...rings: string[][]) =>
    `totem {\n${totem}\n}\nnodelist {\n` +
    rings.map((r, i) => ` node {\n  nodeid: ${i + 1}\n${r.map((a, k) => `  ring${k}_addr: ${a}\n`).join('')} }\n`).join('') +
    '}\n';
  /** A resolver from a fixed map, so family rules are tested without DNS. */
  const fake = (names: Record<string, string[]>): HostLookup => async (name) => {
    const addrs = names[name];
    if (!addrs) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return addrs.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

  test('a corosync.conf, detected by content', async () => {
    const t = await NodeTable.load(write(TWO_RINGS, 'corosync.conf'));
    assert.deepEqual(t.nodeids(), [1, 2]);
    assert.deepEqual(t.get(2)!.addrs, ['10.0.0.2', '10.1.0.2']);
  });

  test('JSON, by content or by the .json name, both shapes', async () => {
    const arr = await NodeTable.load(write('  [{"nodeid":9,"addrs":["127.0.0.9"]}]', 'nodes.txt'));
    assert.deepEqual(arr.nodeids(), [9]);
    const obj = await NodeTable.load(write('\uFEFF{"nodes":[{"nodeid":8,"addrs":["127.0.0.8"]}]}', 'nodes.conf'));
    assert.deepEqual(obj.nodeids(), [8]);
    await assert.rejects(NodeTable.load(write('nodes: none', 'bad.json')), configError(/bad\.json/));
  });

  test('resolves a host name with dns.lookup (localhost, no network)', async () => {
    const p = write(conf('  ip_version: ipv4', ['localhost'], ['127.0.0.2']));
    const t = await NodeTable.load(p);
    assert.deepEqual(t.get(1)!.addrs, ['127.0.0.1']);
    assert.equal(t.nodeidOf('127.0.0.1'), 1);
    assert.equal(t.family, 4);
  });

  test('host names in a JSON table resolve too', async () => {
    const p = write(JSON.stringify([{ nodeid: 1, addrs: ['localhost'] }, { nodeid: 2, addrs: ['127.0.0.2'] }]), 'names.json');
    assert.deepEqual((await NodeTable.load(p)).get(1)!.addrs, ['127.0.0.1']);
  });

  test('resolve: false refuses host names, naming file, line and name', async () => {
    const p = write(conf('  ip_version: ipv4', ['localhost']));
    await assert.rejects(NodeTable.load(p, { resolve: false }), configError(new RegExp(`${path.basename(p)} line 5`), /'localhost' is not an IP address/));
  });

  test('a name that does not resolve, or an unreadable file: ConfigError', async () => {
    await assert.rejects(
      NodeTable.load(write(conf('', ['nowhere'])), { lookup: fake({}) }),
      configError(/cannot resolve 'nowhere'/, /ENOTFOUND/),
    );
    await assert.rejects(NodeTable.load(path.join(dir, 'missing.conf')), configError(/cannot read node table/, /ENOENT/));
  });

  test('every address of a name in the chosen family, in ring order', async () => {
    const lookup = fake({ a: ['10.0.0.1', 'fd00::1', '10.0.0.11', '10.0.0.1'], 'a-r1': ['10.1.0.1'] });
    const t = await NodeTable.load(write(conf('  transport: udpu', ['a', 'a-r1'])), { lookup });
    assert.deepEqual(t.get(1)!.addrs, ['10.0.0.1', '10.0.0.11', '10.1.0.1']);
  });

  test('family: totem.ip_version, else corosync defaults (knet IPv6 first, udpu IPv4)', async () => {
    const lookup = fake({ a: ['10.0.0.1', 'fd00::1'], b: ['10.0.0.2', 'fd00::2'], c: ['10.0.0.3'] });
    const fam = async (totem: string, ...names: string[]) =>
      (await NodeTable.load(write(conf(totem, ...names.map((x) => [x]))), { lookup })).family;
    assert.equal(await fam('  transport: knet', 'a', 'b'), 6);
    assert.equal(await fam('', 'a', 'b'), 6, 'no transport: corosync 3 means knet');
    assert.equal(await fam('  transport: knet', 'a', 'c'), 4, 'ipv6-4 falls back when a name has no IPv6');
    assert.equal(await fam('  transport: udpu', 'a', 'b'), 4);
    assert.equal(await fam('  ip_version: ipv4-6', 'a', 'b'), 4);
    assert.equal(await fam('  ip_version: ipv6', 'a', 'b'), 6);
    await assert.rejects(fam('  ip_version: ipv6', 'a', 'c'), configError(/'c' has no IPv6 address/, /10\.0\.0\.3/));
    await assert.rejects(fam('  ip_version: ipv7', 'a'), configError(/ip_version 'ipv7'/));
  });

  test('family: the IP literals of the file decide where there are any', async () => {
    const lookup = fake({ a: ['10.0.0.1', 'fd00::1'] });
    const t = await NodeTable.load(write(conf('  transport: knet', ['a'], ['10.0.0.2'])), { lookup });
    assert.deepEqual(t.get(1)!.addrs, ['10.0.0.1']);
    await assert.rejects(
      NodeTable.load(write(conf('  ip_version: ipv4', ['a'], ['fd00::2'])), { lookup }),
      configError(/node 2 has IPv6 address 'fd00::2'/, /IPv4 only/),
    );
    const json = await NodeTable.load(write(JSON.stringify([{ nodeid: 1, addrs: ['a'] }]), 'fam.json'), { lookup });
    assert.equal(json.family, 4, 'JSON: IPv4 first');
  });

  test('resolved addresses are validated like any others', async () => {
    const lookup = fake({ a: ['10.0.0.1'], b: ['10.0.0.1'] });
    await assert.rejects(
      NodeTable.load(write(conf('  transport: udpu', ['a'], ['b'])), { lookup }),
      configError(/line 9/, /node 2:/, /already belongs to node 1/),
    );
  });
});
