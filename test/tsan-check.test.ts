/**
 * scripts/tsan-check.mjs decides which ThreadSanitizer reports fail the 'tsan' stage: it
 * must fail on any report where our code made an access or allocated the memory (directly
 * or through libc/libstdc++), and only list races of node/V8/libuv on their own memory.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const script = path.join(__dirname, '..', 'scripts', 'tsan-check.mjs');
const SEP = '==================';

const ours = `${SEP}
WARNING: ThreadSanitizer: data race (pid=1)
  Write of size 1 at 0x7b5800006211 by thread T27:
    #0 <null> <null> (lowcomms.node+0x30333)
    #1 <null> <null> (libstdc++.so.6+0xd44a2)

  Previous read of size 1 at 0x7b5800006211 by main thread:
    #0 <null> <null> (lowcomms.node+0x1d92c)
    #1 v8impl::(anonymous namespace)::FunctionCallbackWrapper::Invoke(v8::FunctionCallbackInfo<v8::Value> const&) <null> (node+0xc45d94)

  Thread T27 (tid=2, running) created by main thread at:
    #0 pthread_create tsan_interceptors_posix.cpp:1001 (libtsan.so+0x5e686)

SUMMARY: ThreadSanitizer: data race (/x/lowcomms.node+0x30333)
${SEP}
`;

// Our code calls free() on memory another thread of ours reads: ours, through libtsan.
const oursViaCallee = `${SEP}
WARNING: ThreadSanitizer: heap-use-after-free (pid=1)
  Write of size 8 at 0x7b1400022bf8 by thread T30:
    #0 free tsan_interceptors_posix.cpp:706 (libtsan.so+0x47e82)
    #1 <null> <null> (lowcomms.node+0x2a000)

  Previous read of size 1 at 0x7b1400022bff by main thread:
    #0 memmove sanitizer_common_interceptors.inc:810 (libtsan.so+0x5dc76)
    #1 <null> <null> (lowcomms.node+0x2b000)

SUMMARY: ThreadSanitizer: heap-use-after-free (/x/lowcomms.node+0x2a000)
${SEP}
`;

// Our module appears only where the thread was created, and below V8's own frames (V8
// waits for its GC job inside a napi call of ours), on V8's memory: not ours.
const foreign = `${SEP}
WARNING: ThreadSanitizer: data race (pid=1)
  Write of size 8 at 0x7b3000017df8 by thread T4:
    #0 operator delete(void*, unsigned long) tsan_new_delete.cpp:150 (libtsan.so+0x86c3d)
    #1 v8::platform::DefaultJobWorker::~DefaultJobWorker() <null> (node+0x1d5aa65)

  Previous write of size 1 at 0x7b3000017df8 by thread T11:
    #0 pthread_mutex_destroy tsan_interceptors_posix.cpp:1312 (libtsan.so+0x42191)
    #1 v8::platform::DefaultJobState::~DefaultJobState() <null> (node+0x1d65445)

  Previous atomic read of size 1 at 0x7b3000017df8 by main thread:
    #0 pthread_cond_wait tsan_interceptors_posix.cpp:1223 (libtsan.so+0x62843)
    #1 v8::platform::DefaultJobState::Join() <null> (node+0x1d65cea)
    #2 <null> <null> (lowcomms.node+0x12345)

  Location is heap block of size 192 at 0x7b3000017dc0 allocated by main thread:
    #0 operator new(unsigned long) tsan_new_delete.cpp:64 (libtsan.so+0x87323)
    #1 v8::platform::NewDefaultJobHandle() <null> (node+0x1d5bcba)
    #2 <null> <null> (lowcomms.node+0x12345)

  Thread T11 (tid=3, running) created by main thread at:
    #0 pthread_create tsan_interceptors_posix.cpp:1001 (libtsan.so+0x5e686)
    #1 <null> <null> (lowcomms.node+0x10f7b)

SUMMARY: ThreadSanitizer: data race (/usr/bin/node+0x1d65445) in v8::platform::DefaultJobState::~DefaultJobState()
${SEP}
`;

function check(text: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcomms-tsan-check-'));
  try {
    fs.writeFileSync(path.join(dir, 'tsan.123'), text);
    return spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('a race with a frame of ours fails the check', () => {
  const r = check(foreign + ours);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stdout, /1 report\(s\) involve lowcomms code: FAIL/);
  assert.match(r.stdout, /1 report\(s\) inside node\/V8\/libuv only/);
});

test('our code calling free()/memcpy() on racing memory is ours', () => {
  const r = check(oursViaCallee);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stdout, /1 report\(s\) involve lowcomms code: FAIL/);
});

test('races inside node/V8/libuv only are listed, not failed', () => {
  const r = check(foreign);
  assert.equal(r.status, 0, r.stdout);
  assert.match(r.stdout, /DefaultJobState/);
  assert.match(r.stdout, /no report involves lowcomms code/);
});
