import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MAX_RINGS,
  parseCorosyncConf,
  parseCorosyncNodelist,
  parseCorosyncTree,
  sectionValue,
} from '../lib/corosync';
import { ConfigError } from '../lib/errors';

/** corosync 3 style: knet, two links, crypto, the links' interface sections. */
const KNET_TWO_LINKS = `# Please read the corosync.conf.5 manual page
totem {
\tversion: 2
\tcluster_name: lockbox
\ttransport: knet
\tlink_mode: passive
\tcrypto_cipher: aes256
\tcrypto_hash: sha256

\tinterface {
\t\tlinknumber: 0
\t\tknet_link_priority: 1
\t}
\tinterface {
\t\tlinknumber: 1
\t}
}

nodelist {
\tnode {
\t\tring0_addr: 10.0.0.1
\t\tring1_addr: 10.1.0.1
\t\tname: alpha
\t\tnodeid: 1
\t}

\tnode {
\t\tring0_addr: 10.0.0.2
\t\tring1_addr: 10.1.0.2
\t\tname: beta
\t\tnodeid: 2
\t}

\tnode {
\t\t# ring1 first in the file: ring order still wins
\t\tring1_addr: 10.1.0.3
\t\tring0_addr: 10.0.0.3
\t\tname: gamma
\t\tnodeid: 3
\t}
}

quorum {
\tprovider: corosync_votequorum
}

logging {
\tto_logfile: yes
\tlogfile: /var/log/cluster/corosync.log
\tto_syslog: yes
\ttimestamp: on
}
`;

/** corosync 2 style: udpu, redundant ring protocol, interfaces with ringnumber/bindnetaddr. */
const UDPU_TWO_RINGS = `totem {
    version: 2
    secauth: off
    cluster_name: oldbox
    transport: udpu
    rrp_mode: passive

    interface {
        ringnumber: 0
        bindnetaddr: 192.168.1.0
        mcastport: 5405
    }
    interface {
        ringnumber: 1
        bindnetaddr: 192.168.2.0
        mcastport: 5407
    }
}

nodelist {
    node {
        ring0_addr: 192.168.1.11
        ring1_addr: 192.168.2.11
        nodeid: 11
    }
    node {
        ring0_addr: 192.168.1.12
        ring1_addr: 192.168.2.12
        nodeid: 12
    }
}

quorum {
    provider: corosync_votequorum
    two_node: 1
}
`;

/** assert.throws matcher: a ConfigError whose message matches every regexp. */
function configError(...res: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    for (const re of res) assert.match(e.message, re);
    return true;
  };
}

describe('parseCorosyncTree()', () => {
  test('sections, entries with line numbers, nesting', () => {
    const root = parseCorosyncTree('totem {\n  version: 2\n  interface {\n    linknumber: 0\n  }\n}\n');
    assert.equal(root.name, '');
    assert.equal(root.sections.length, 1);
    const totem = root.sections[0]!;
    assert.equal(totem.name, 'totem');
    assert.equal(totem.line, 1);
    assert.deepEqual(totem.entries, [{ key: 'version', value: '2', line: 2 }]);
    assert.equal(totem.sections[0]!.name, 'interface');
    assert.equal(totem.sections[0]!.line, 3);
    assert.deepEqual(totem.sections[0]!.entries, [{ key: 'linknumber', value: '0', line: 4 }]);
  });

  test('comments, blank lines, CRLF, a BOM, no space before the brace', () => {
    const text = '\uFEFF# head\r\n\r\n   # indented comment\r\ntotem{ # open\r\n\tcluster_name: a   # trailing comment\r\n} # close\r\n';
    const root = parseCorosyncTree(text);
    assert.equal(root.sections.length, 1);
    assert.deepEqual(root.sections[0]!.entries, [{ key: 'cluster_name', value: 'a', line: 5 }]);
  });

  test('values: IPv6 unquoted (the key ends at the first colon), quotes tolerated, empty values', () => {
    const root = parseCorosyncTree(
      'a: fd00:1::5\nb: "quoted # not a comment"\nc: \'single\'  # comment\nd:\ne:x#y\nf: "" \n',
    );
    const v = (k: string) => sectionValue(root, k)?.value;
    assert.equal(v('a'), 'fd00:1::5');
    assert.equal(v('b'), 'quoted # not a comment');
    assert.equal(v('c'), 'single');
    assert.equal(v('d'), '');
    assert.equal(v('e'), 'x#y', 'a # inside a word is not a comment');
    assert.equal(v('f'), '');
  });

  test('sectionValue(): the last of repeated keys wins, as in corosync; entries keeps all', () => {
    const root = parseCorosyncTree('totem {\n token: 1000\n token: 3000\n}\n');
    const totem = root.sections[0]!;
    assert.equal(totem.entries.length, 2);
    assert.deepEqual(sectionValue(totem, 'token'), { key: 'token', value: '3000', line: 3 });
    assert.equal(sectionValue(totem, 'nothing'), undefined);
  });

  test('syntax errors are ConfigErrors naming the line', () => {
    const cases: Array<[string, RegExp[]]> = [
      ['}\n', [/line 1/, /without an open section/]],
      ['totem {\n}\n}\n', [/line 3/, /without an open section/]],
      ['totem {\n  what is this\n}\n', [/line 2/, /expected/]],
      ['totem {\n', [/opened on line 1 is never closed/]],
      ['a {\n b {\n }\n', [/'a' opened on line 1 is never closed/]],
      ['\n\nnode { ring0_addr: 10.0.0.1 }\n', [/line 3/]],
      ['totem {\n x: a {\n}\n', [/line 2/, /brace/]],
      ['totem {\n x: a }\n', [/line 2/, /brace/]],
      ['x: "open\n', [/line 1/, /unterminated/]],
      ['x: "a" b\n', [/line 1/, /after the closing quote/]],
      ['to tem {\n}\n', [/line 1/]],
      ['a=b: c\n', [/line 1/, /bad key/]],
    ];
    for (const [text, res] of cases) assert.throws(() => parseCorosyncTree(text), configError(...res), JSON.stringify(text));
  });

  test('errors name the source given', () => {
    assert.throws(() => parseCorosyncTree('}\n', '/etc/corosync/corosync.conf'), configError(/^\/etc\/corosync\/corosync\.conf line 1:/));
  });
});

describe('parseCorosyncNodelist()', () => {
  test('knet, two links: nodeid, addresses in ring order, name', () => {
    assert.deepEqual(parseCorosyncNodelist(KNET_TWO_LINKS), [
      { nodeid: 1, addrs: ['10.0.0.1', '10.1.0.1'], name: 'alpha', line: 20 },
      { nodeid: 2, addrs: ['10.0.0.2', '10.1.0.2'], name: 'beta', line: 27 },
      { nodeid: 3, addrs: ['10.0.0.3', '10.1.0.3'], name: 'gamma', line: 34 },
    ]);
  });

  test('udpu, two rings, no names', () => {
    assert.deepEqual(parseCorosyncNodelist(UDPU_TWO_RINGS), [
      { nodeid: 11, addrs: ['192.168.1.11', '192.168.2.11'], line: 21 },
      { nodeid: 12, addrs: ['192.168.1.12', '192.168.2.12'], line: 26 },
    ]);
  });

  test('ring0..ring7, gaps skipped; ring8 and beyond refused', () => {
    const rings = Array.from({ length: MAX_RINGS }, (_, r) => `  ring${MAX_RINGS - 1 - r}_addr: 10.${MAX_RINGS - 1 - r}.0.1`).join('\n');
    const [n] = parseCorosyncNodelist(`nodelist {\n node {\n  nodeid: 1\n${rings}\n }\n}\n`);
    assert.deepEqual(n!.addrs, Array.from({ length: MAX_RINGS }, (_, r) => `10.${r}.0.1`));
    const [g] = parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 1\n  ring2_addr: c\n  ring0_addr: a\n }\n}\n');
    assert.deepEqual(g!.addrs, ['a', 'c']);
    assert.throws(
      () => parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 1\n  ring0_addr: a\n  ring8_addr: b\n }\n}\n'),
      configError(/line 5/, /ring8_addr/, /0\.\.7/),
    );
  });

  test('host names are returned as written (load() resolves them)', () => {
    const [n] = parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 4\n  ring0_addr: node-d.example.com\n }\n}\n');
    assert.deepEqual(n!.addrs, ['node-d.example.com']);
  });

  test('a node without nodeid is an error naming its line (DLM needs nodeids)', () => {
    assert.throws(
      () => parseCorosyncNodelist('nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  name: a\n }\n}\n'),
      configError(/line 2/, /without a nodeid/),
    );
  });

  test('a nodeid that is not a decimal integer in 1..2^32-1 is an error naming its line', () => {
    for (const bad of ['0', '-1', 'abc', '0x10', '1e3', '1.5', '4294967296', ''])
      assert.throws(
        () => parseCorosyncNodelist(`nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: ${bad}\n }\n}\n`),
        configError(/line 4/, /nodeid/),
        bad,
      );
    const [n] = parseCorosyncNodelist('nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 4294967295\n }\n}\n');
    assert.equal(n!.nodeid, 0xffffffff);
  });

  test('a node without addresses, an empty address, a repeated key or nodeid: errors with lines', () => {
    assert.throws(() => parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 3\n }\n}\n'), configError(/line 2/, /node 3 has no ring0_addr/));
    assert.throws(
      () => parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 3\n  ring0_addr:\n }\n}\n'),
      configError(/line 4/, /ring0_addr is empty/),
    );
    assert.throws(
      () => parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 3\n  ring0_addr: a\n  nodeid: 4\n }\n}\n'),
      configError(/line 5/, /'nodeid' given twice/, /line 3/),
    );
    assert.throws(
      () => parseCorosyncNodelist('nodelist {\n node {\n  nodeid: 3\n  ring0_addr: a\n }\n node {\n  nodeid: 3\n  ring0_addr: b\n }\n}\n'),
      configError(/line 6/, /nodeid 3 already used by the node on line 2/),
    );
  });

  test('only node sections of nodelist count; several nodelist sections merge', () => {
    const nodes = parseCorosyncNodelist(
      'totem {\n node {\n  nodeid: 9\n }\n}\nnodelist {\n node {\n  nodeid: 1\n  ring0_addr: a\n }\n}\nnodelist {\n node {\n  nodeid: 2\n  ring0_addr: b\n }\n}\n',
    );
    assert.deepEqual(nodes.map((n) => n.nodeid), [1, 2]);
    assert.deepEqual(parseCorosyncNodelist('totem {\n version: 2\n}\n'), []);
  });
});

describe('parseCorosyncConf()', () => {
  test('knet: cluster name, transport, link mode, interface count, nodes', () => {
    const c = parseCorosyncConf(KNET_TWO_LINKS);
    assert.equal(c.clusterName, 'lockbox');
    assert.equal(c.transport, 'knet');
    assert.equal(c.linkMode, 'passive');
    assert.equal(c.rrpMode, undefined);
    assert.equal(c.interfaces, 2);
    assert.deepEqual(c.nodes.map((n) => n.nodeid), [1, 2, 3]);
  });

  test('udpu: rrp_mode (what dlm_controld protocol=detect reads)', () => {
    const c = parseCorosyncConf(UDPU_TWO_RINGS);
    assert.equal(c.clusterName, 'oldbox');
    assert.equal(c.transport, 'udpu');
    assert.equal(c.rrpMode, 'passive');
    assert.equal(c.interfaces, 2);
    assert.equal(c.nodes.length, 2);
  });

  test('settings absent from the file are absent from the result', () => {
    const c = parseCorosyncConf('nodelist {\n node {\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n }\n}\n');
    assert.deepEqual(c, { nodes: [{ nodeid: 1, addrs: ['10.0.0.1'], line: 2 }] });
  });

  test('ip_version is reported; several totem sections merge, later wins', () => {
    const c = parseCorosyncConf('totem {\n ip_version: ipv6\n transport: udpu\n}\ntotem {\n transport: knet\n}\n');
    assert.equal(c.ipVersion, 'ipv6');
    assert.equal(c.transport, 'knet');
    assert.equal(c.interfaces, undefined);
  });

  test('errors carry the line and the source', () => {
    assert.throws(() => parseCorosyncConf('totem {\n  bogus line\n}\n', 'my.conf'), configError(/^my\.conf line 2:/));
  });
});
