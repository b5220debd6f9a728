// The pipeline benchmark's measuring helpers: /proc readings and the CPU profile summary.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { busiestThread, cpuSeconds, findPid, peakRssMiB, threadTimes } from '../../../bench/lib/proc.js';
import { summariseCpuProfile, formatProfile } from '../../../bench/lib/profile.js';
import { LINE_ID } from '../../../bench/lib/kafka.js';
import { tempDir } from '../../harness/index.js';

describe('bench /proc readings', () => {
  it('reads this process CPU seconds, peak RSS and per-thread scheduler times, and nothing for a pid that does not exist', () => {
    const before = threadTimes(process.pid);
    const cpu0 = cpuSeconds(process.pid)!;
    const end = Date.now() + 150;
    let x = 0;
    while (Date.now() < end) x += Math.sqrt(x + 1); // burn CPU on the main thread
    assert.ok(x > 0);
    const cpu1 = cpuSeconds(process.pid)!;
    assert.ok(cpu1 >= cpu0 + 0.05, `CPU went from ${cpu0} to ${cpu1}`);
    assert.ok(peakRssMiB(process.pid)! > 10);
    const busy = busiestThread(before, threadTimes(process.pid))!;
    assert.equal(busy.tid, process.pid, 'the main thread burnt the CPU');
    assert.ok(busy.cpuS >= 0.1, `busiest thread CPU ${busy.cpuS}`);
    assert.equal(cpuSeconds(2 ** 22 + 1), undefined);
    assert.equal(peakRssMiB(2 ** 22 + 1), undefined);
    assert.equal(threadTimes(2 ** 22 + 1).size, 0);
  });

  it('finds a process by the parts of its command line', async () => {
    const marker = `ferry-bench-${randomBytes(4).toString('hex')}`;
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', marker], { stdio: 'ignore' });
    after(() => child.kill('SIGKILL'));
    await new Promise<void>((resolve) => child.once('spawn', resolve));
    assert.equal(findPid(marker, '-e'), child.pid);
    assert.equal(findPid(marker, 'no-such-part'), undefined);
  });
});

describe('bench CPU profile summary', () => {
  it('ranks modules and functions by sampled self time and counts idle time apart', () => {
    const dir = tempDir('bench-profile');
    after(() => dir.cleanup());
    const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber, scriptId: '0', columnNumber: 0 });
    const profile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', '') },
        { id: 2, callFrame: frame('(idle)', '') },
        { id: 3, callFrame: frame('encode', 'file:///x/node_modules/kafkajs/src/protocol/encoder.js', 9) },
        { id: 4, callFrame: frame('produce', 'file:///x/dist/gateway/sinks/kafka/sink.js', 41) },
        { id: 5, callFrame: frame('(garbage collector)', '') },
      ],
      startTime: 0,
      endTime: 1_000_000,
      // 10 samples of 100 ms: 4 idle, 3 kafkajs, 2 gateway, 1 GC
      samples: [2, 2, 2, 2, 3, 3, 3, 4, 4, 5],
      timeDeltas: [100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000],
    };
    const file = join(dir.path, 'x.cpuprofile');
    writeFileSync(file, JSON.stringify(profile));
    const s = summariseCpuProfile(file);
    assert.equal(s.totalMs, 1000);
    assert.ok(Math.abs(s.idleShare - 0.4) < 1e-9);
    assert.deepEqual(
      s.byModule.map((m) => [m.name, Math.round(m.share * 100)]),
      [
        ['kafkajs', 50],
        ['gateway/sinks', 33],
        ['(garbage collector)', 17],
      ],
    );
    assert.equal(s.byFunction[0]!.name, 'encode node_modules/kafkajs/src/protocol/encoder.js:10');
    assert.match(formatProfile('gateway', s), /^gateway: 1\.0 s profiled, idle 40\.0% of it/);
  });
});

describe('bench line ids', () => {
  it('reads the file and line number from a benchmark line', () => {
    const m = LINE_ID.exec('2023-11-14T22:13:20.000Z INFO f=3 id=0001234 xxxx');
    assert.deepEqual([m?.[1], m?.[2]], ['3', '0001234']);
    assert.equal(LINE_ID.exec('2023-11-14T22:13:20.000Z INFO something else'), null);
  });
});
