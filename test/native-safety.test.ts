import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/native';
import { Device } from '../src/io/device';
import { Slab } from '../src/io/slab';
import { describeChild, runChild, source } from './support/child';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * G6 at the native boundary: nothing a caller does crashes the process or
 * lands I/O in memory it no longer owns (issue 11). One test per finding;
 * what could crash runs in a child process, and faults that the kernel will
 * not make on demand (a thread that cannot start, a short io_uring_enter) are
 * injected by a preloaded library (support/fault-shim.c) over the real calls.
 */

const PAGE = 4096;
const uringHere = native.probeIoUring() === 0;

describe('native safety (issue 11)', function () {
  this.timeout(120_000);
  let scratch: ScratchDir;
  before(() => {
    scratch = makeScratchDir('native-safety');
  });
  after(() => scratch.remove());

  /** A directory of fault switches for one child. */
  const faultDir = (name: string): string => {
    const dir = scratch.file(`faults-${name}`);
    fs.mkdirSync(dir);
    return dir;
  };

  it('1: Workers allocating and releasing slabs at the same time share no registry (two Workers, 50,000 slabs each)', () => {
    const child = runChild(`
      const { Worker } = require('node:worker_threads');
      const body = ${JSON.stringify(`
        ${"require(" + source('node_modules/ts-node') + ").register({ transpileOnly: true, project: " + source('tsconfig.json') + " });"}
        const { native } = require(${source('src/native.ts')});
        const { parentPort } = require('node:worker_threads');
        let errors = 0, released = 0;
        const kept = [];
        for (let i = 0; i < 50000; i++) {
          const slab = native.allocSlab(4096);
          new Uint8Array(slab)[0] = i & 0xff;
          // Half released at once, half left to the garbage collector (some held a while).
          if (i % 2 === 0) { try { native.releaseSlab(slab); released++; } catch (e) { errors++; } }
          else if (i % 64 === 1) kept.push(slab);
          if (kept.length > 32) kept.shift();
        }
        parentPort.postMessage({ errors, released });
      `)};
      const runs = [0, 1].map(() => new Promise((resolve, reject) => {
        const w = new Worker(body, { eval: true });
        w.once('message', resolve);
        w.once('error', reject);
      }));
      Promise.all(runs).then((reports) => console.log(JSON.stringify(reports)), (e) => { console.log(JSON.stringify({ error: String(e) })); });
    `);
    assert.equal(child.signal, null, describeChild(child));
    assert.equal(child.status, 0, describeChild(child));
    assert.deepEqual(child.report, [
      { errors: 0, released: 25000 },
      { errors: 0, released: 25000 },
    ]);
  });

  it('1: a slab belongs to the thread that allocated it: another Worker can neither release it nor use it for I/O', () => {
    // A slab's ArrayBuffer reaches another thread only as a copy: Node marks
    // external memory untransferable, and a transfer list clones it instead.
    const child = runChild(`
      const { Worker } = require('node:worker_threads');
      const { native } = require(${source('src/native.ts')});
      const slab = native.allocSlab(4096);
      structuredClone(slab, { transfer: [slab] });
      const transfer = slab.byteLength === 4096 ? 'kept' : 'moved';
      const w = new Worker(${JSON.stringify(`
        ${"require(" + source('node_modules/ts-node') + ").register({ transpileOnly: true, project: " + source('tsconfig.json') + " });"}
        const { native } = require(${source('src/native.ts')});
        const { parentPort, workerData } = require('node:worker_threads');
        let release;
        try { native.releaseSlab(workerData); release = 'released'; } catch (e) { release = e.message; }
        parentPort.postMessage(release);
      `)}, { eval: true, workerData: slab });
      w.once('message', (release) => {
        native.releaseSlab(slab);
        console.log(JSON.stringify({ transfer, release }));
      });
    `);
    assert.equal(child.status, 0, describeChild(child));
    assert.deepEqual(child.report, { transfer: 'kept', release: 'releaseSlab: this ArrayBuffer is not a slab of this thread' });
  });

  it('Workers each with a device of their own write, read back and close at the same time (io_uring and threads)', function () {
    const engines = uringHere ? ['io_uring', 'threads'] : ['threads', 'threads'];
    const child = runChild(`
      const { Worker } = require('node:worker_threads');
      const body = ${JSON.stringify(`
        ${"require(" + source('node_modules/ts-node') + ").register({ transpileOnly: true, project: " + source('tsconfig.json') + " });"}
        const { Device } = require(${source('src/io/device.ts')});
        const { Slab } = require(${source('src/io/slab.ts')});
        const { parentPort, workerData } = require('node:worker_threads');
        (async () => {
          const device = await Device.open(workerData.file, { size: 1 << 20, engine: workerData.engine, queueDepth: 8 });
          let wrong = 0;
          for (let round = 0; round < 50; round++) {
            const slab = Slab.alloc(4096, 32);
            for (let i = 0; i < 16; i++) slab.page(i).fill((round + i) & 0xff);
            await device.run(Array.from({ length: 16 }, (_, i) => ({ op: 'write', offset: i * 4096, buffers: [slab.page(i)] })));
            await device.run(Array.from({ length: 16 }, (_, i) => ({ op: 'read', offset: i * 4096, buffers: [slab.page(16 + i)] })));
            for (let i = 0; i < 16; i++) if (!slab.page(16 + i).every((x) => x === ((round + i) & 0xff))) wrong++;
            if (round % 2 === 0) slab.release();
          }
          await device.close();
          parentPort.postMessage({ engine: device.engine, wrong });
        })();
      `)};
      const files = ${JSON.stringify(engines.map((engine, i) => ({ engine, file: scratch.file(`worker-${i}.img`) })))};
      Promise.all(files.map((workerData) => new Promise((resolve, reject) => {
        const w = new Worker(body, { eval: true, workerData });
        w.once('message', resolve);
        w.once('error', reject);
      }))).then((reports) => console.log(JSON.stringify(reports)), (e) => console.log(JSON.stringify({ error: String(e) })));
    `);
    assert.equal(child.signal, null, describeChild(child));
    assert.equal(child.status, 0, describeChild(child));
    assert.deepEqual(child.report, engines.map((engine) => ({ engine, wrong: 0 })));
  });

  it('2: a slab is pinned as soon as its buffer is read: JS run by a later buffer (a getter) cannot release it, and a batch that throws unpins it', async () => {
    const device = await Device.open(scratch.file('getter.img'), { size: 16 * PAGE });
    try {
      const a = Slab.alloc(PAGE, 1);
      let replacement: Slab | undefined;
      let refused: unknown;
      const buffers: Uint8Array[] = [a.page(0)];
      Object.defineProperty(buffers, 1, {
        enumerable: true,
        get() {
          // Frees the slab already checked and maps a new one, likely at its address.
          try {
            a.release();
          } catch (error) {
            refused = error;
          }
          replacement = Slab.alloc(PAGE, 1);
          return replacement.page(0);
        },
      });
      const results = await device.submit([{ op: 'read', offset: 0, buffers }]);
      assert.ok(refused instanceof Error, 'the release inside the getter was refused');
      assert.equal(refused.message, 'releaseSlab: the slab is in use by 1 buffer(s) of I/O requests or checksum jobs in flight');
      assert.deepEqual(results, [{ bytes: 2 * PAGE }]);
      assert.equal(a.byteLength, PAGE, 'the slab the read went to is whole');
      a.release();
      replacement?.release();

      // A batch whose parsing throws after pinning a slab leaves it unpinned.
      const b = Slab.alloc(PAGE, 1);
      await assert.rejects(device.submit([{ op: 'read', offset: 0, buffers: [b.page(0), 'x' as unknown as Uint8Array] }]), TypeError);
      b.release();
      assert.equal(b.byteLength, 0);
    } finally {
      await device.close();
    }
  });

  for (const engine of ['io_uring', 'threads'] as const) {
    it(`3: a queued request keeps its own buffers alive: the caller's array emptied, the slab dropped and collected (${engine}, queue depth 1, 3,000 writes ahead)`, function () {
      if (engine === 'io_uring' && !uringHere) this.skip();
      const child = runChild(
        `
        const { Device } = require(${source('src/io/device.ts')});
        const { Slab } = require(${source('src/io/slab.ts')});
        const settle = () => new Promise((resolve) => setImmediate(resolve));
        (async () => {
          const device = await Device.open(${JSON.stringify(scratch.file(`keep-alive-${engine}.img`))}, { size: 1 << 20, engine: '${engine}', queueDepth: 1 });
          const source = Slab.alloc(4096, 1);
          source.page(0).fill(0xa5);
          await device.run([{ op: 'write', offset: 0, buffers: [source.page(0)] }]);
          const ahead = device.submit(Array.from({ length: 3000 }, (_, i) => ({ op: 'write', offset: (i % 16) * 4096 + 65536, buffers: [source.page(0)] })));
          let target = Slab.alloc(4096, 4);
          const buffers = [target.page(0), target.page(1), target.page(2), target.page(3)];
          const read = device.submit([{ op: 'read', offset: 0, buffers }]);
          buffers.length = 0;
          target = undefined;
          let collected = false;
          for (let i = 0; i < 4; i++) { global.gc(); await settle(); }
          // Newer slabs of the same size: where the kernel would write if the old one were gone.
          const newer = Array.from({ length: 8 }, () => Slab.alloc(4096, 4));
          for (const s of newer) new Uint8Array(s.memory).fill(0x5a);
          const [result] = await read;
          await ahead;
          const clean = newer.every((s) => new Uint8Array(s.memory).every((x) => x === 0x5a));
          await device.close();
          console.log(JSON.stringify({ bytes: result.bytes, error: result.error ? result.error.code : null, clean }));
        })();
      `,
        { nodeArgs: ['--expose-gc'] },
      );
      assert.equal(child.signal, null, describeChild(child));
      assert.equal(child.status, 0, describeChild(child));
      assert.deepEqual(child.report, { bytes: 4 * PAGE, error: null, clean: true });
    });
  }

  it('4: memory that is not a slab is refused with a TypeError, even a plain ArrayBuffer view at an aligned-looking offset', async () => {
    const device = await Device.open(scratch.file('plain.img'), { size: 16 * PAGE });
    try {
      const plain = new ArrayBuffer(4 * PAGE);
      for (const offset of [0, 496, 512, PAGE]) {
        await assert.rejects(device.submit([{ op: 'read', offset: 0, buffers: [new Uint8Array(plain, offset, 512)] }]), {
          name: 'TypeError',
          message: 'request 0: buffer 0 is not slab memory (I/O buffers must be views of a Slab of this thread)',
        });
      }
    } finally {
      await device.close();
    }
  });

  it('5: a Worker terminated with writes in flight (threads engine): the one running finishes into mapped memory, the queued ones never run', () => {
    const faults = faultDir('terminate');
    fs.writeFileSync(path.join(faults, 'hold-write'), '');
    const file = scratch.file('terminate-threads.img');
    const child = runChild(
      `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(${JSON.stringify(`
        ${"require(" + source('node_modules/ts-node') + ").register({ transpileOnly: true, project: " + source('tsconfig.json') + " });"}
        const { Device } = require(${source('src/io/device.ts')});
        const { Slab } = require(${source('src/io/slab.ts')});
        const { parentPort } = require('node:worker_threads');
        (async () => {
          const device = await Device.open(${JSON.stringify(file)}, { size: 1 << 20, engine: 'threads', queueDepth: 1 });
          const slab = Slab.alloc(4096, 64);
          for (let i = 0; i < 64; i++) slab.page(i).fill(i + 1);
          device.submit(Array.from({ length: 64 }, (_, i) => ({ op: 'write', offset: i * 4096, buffers: [slab.page(i)] })));
          // Terminate only once a pool thread is inside the first write (the shim
          // logs it): posted any earlier, the teardown could come before any
          // thread took a request, and nothing would be in flight.
          const heldLog = require('node:path').join(${JSON.stringify(faults)}, 'held.log');
          while (!require('node:fs').existsSync(heldLog)) await new Promise((r) => setTimeout(r, 5));
          parentPort.postMessage('submitted');
        })();
      `)}, { eval: true });
      w.once('message', () => w.terminate());
      w.once('exit', (code) => console.log(JSON.stringify({ code })));
    `,
      { faults: { dir: faults } },
    );
    assert.equal(child.signal, null, describeChild(child));
    assert.equal(child.status, 0, describeChild(child));
    const held = fs.readFileSync(path.join(faults, 'held.log'), 'utf8');
    assert.match(held, /^holding\n/, 'the first write was held while the Worker was terminated');
    assert.match(held, /released by timeout: result 4096 errno 0\n$/, `the slab under the held write was never unmapped: ${held}`);
    assert.ok(!fs.existsSync(path.join(faults, 'efault.log')), 'no request ran against unmapped memory');
    // The queued writes were dropped: only the held one reached the file.
    const image = fs.readFileSync(file);
    const written = Array.from({ length: 64 }, (_, i) => image[i * PAGE] !== 0).filter(Boolean).length;
    assert.equal(written, 1, `${written} of 64 blocks were written`);
  });

  it('5: Workers terminated with reads and writes in flight on io_uring: each teardown waits for the ring, the process goes on', function () {
    if (!uringHere) this.skip();
    const faults = faultDir('terminate-uring');
    const child = runChild(
      `
      const { Worker } = require('node:worker_threads');
      let exits = 0;
      const start = () => {
        const w = new Worker(${JSON.stringify(`
          ${"require(" + source('node_modules/ts-node') + ").register({ transpileOnly: true, project: " + source('tsconfig.json') + " });"}
          const { Device } = require(${source('src/io/device.ts')});
          const { Slab } = require(${source('src/io/slab.ts')});
          const { parentPort, workerData } = require('node:worker_threads');
          (async () => {
            const device = await Device.open(workerData, { size: 1 << 20, engine: 'io_uring', queueDepth: 16 });
            const slab = Slab.alloc(4096, 64);
            device.submit(Array.from({ length: 512 }, (_, i) => ({ op: i % 2 ? 'read' : 'write', offset: (i % 256) * 4096, buffers: [slab.page(i % 64)] })));
            parentPort.postMessage('submitted');
          })();
        `)}, { eval: true, workerData: ${JSON.stringify(scratch.file('terminate-uring'))} + exits + '.img' });
        w.once('message', () => w.terminate());
        w.once('exit', () => { if (++exits < 3) start(); else console.log(JSON.stringify({ exits })); });
      };
      start();
    `,
      { faults: { dir: faults }, timeoutMs: 110_000 },
    );
    assert.equal(child.signal, null, describeChild(child));
    assert.equal(child.status, 0, describeChild(child));
    assert.deepEqual(child.report, { exits: 3 });
  });

  it('6: a thread that cannot be started is a system error (EAGAIN, pthread_create) with nothing in flight; the device works once threads can start', () => {
    const faults = faultDir('threads');
    const control = path.join(faults, 'pthread_create');
    const child = runChild(
      `
      const fs = require('node:fs');
      const { Device } = require(${source('src/io/device.ts')});
      const { Slab } = require(${source('src/io/slab.ts')});
      (async () => {
        const device = await Device.open(${JSON.stringify(scratch.file('threads.img'))}, { size: 1 << 20, engine: 'threads', queueDepth: 4 });
        const slab = Slab.alloc(4096, 1);
        fs.writeFileSync(${JSON.stringify(control)}, '');
        let refused;
        try { await device.submit([{ op: 'write', offset: 0, buffers: [slab.page(0)] }]); } catch (e) { refused = { code: e.code, errno: e.errno, syscall: e.syscall, path: e.path, message: e.message }; }
        let flushRefused;
        try { await device.flush(); } catch (e) { flushRefused = e.code; }
        fs.unlinkSync(${JSON.stringify(control)});
        slab.page(0).fill(7);
        await device.run([{ op: 'write', offset: 0, buffers: [slab.page(0)] }]);
        await device.close();
        slab.release();
        console.log(JSON.stringify({ refused, flushRefused }));
      })();
    `,
      { faults: { dir: faults } },
    );
    assert.equal(child.signal, null, describeChild(child));
    assert.equal(child.status, 0, describeChild(child));
    const file = scratch.file('threads.img');
    assert.deepEqual(child.report, {
      refused: {
        code: 'EAGAIN',
        errno: -11,
        syscall: 'pthread_create',
        path: file,
        message: `EAGAIN: resource temporarily unavailable, pthread_create '${file}' (the submit was not started)`,
      },
      flushRefused: 'EAGAIN',
    });
    assert.equal(fs.readFileSync(file)[0], 7);
  });

  /**
   * A child that writes 32 pages through io_uring (queue depth 4: completions
   * make room for several entries at once) while a fault is on, then reads
   * them back.
   */
  const uringUnderFault = (fault: string, lift: 'at once' | 'after submit') => {
    const faults = faultDir(fault);
    const control = path.join(faults, fault);
    fs.writeFileSync(control, '');
    return runChild(
      `
      const fs = require('node:fs');
      const { Device } = require(${source('src/io/device.ts')});
      const { Slab } = require(${source('src/io/slab.ts')});
      (async () => {
        const device = await Device.open(${JSON.stringify(scratch.file(`${fault}.img`))}, { size: 1 << 20, engine: 'io_uring', queueDepth: 4 });
        const slab = Slab.alloc(4096, 64);
        for (let i = 0; i < 32; i++) slab.page(i).fill(i + 1);
        const writes = device.submit(Array.from({ length: 32 }, (_, i) => ({ op: 'write', offset: i * 4096, buffers: [slab.page(i)] })));
        ${lift === 'after submit' ? `fs.unlinkSync(${JSON.stringify(control)});` : ''}
        const written = (await writes).map((r) => r.bytes);
        const read = (await device.submit(Array.from({ length: 32 }, (_, i) => ({ op: 'read', offset: i * 4096, buffers: [slab.page(32 + i)] })))).map((r) => r.bytes);
        const same = Array.from({ length: 32 }, (_, i) => slab.page(32 + i).every((x) => x === i + 1)).every(Boolean);
        await device.close();
        console.log(JSON.stringify({ written, read, same }));
      })();
    `,
      { faults: { dir: faults }, timeoutMs: 30_000 },
    );
  };
  const allPages = { written: new Array(32).fill(PAGE), read: new Array(32).fill(PAGE), same: true };

  it('7: io_uring_enter consuming one entry per call: the rest are offered again, every request completes', function () {
    if (!uringHere) this.skip();
    const child = uringUnderFault('enter-short', 'at once');
    assert.equal(child.signal, null, `hung or crashed: ${describeChild(child)}`);
    assert.equal(child.status, 0, describeChild(child));
    assert.deepEqual(child.report, allPages);
  });

  it('7: io_uring_enter failing with EAGAIN: submit returns and the JS thread runs (it lifts the fault), the engine retries later', function () {
    if (!uringHere) this.skip();
    // A busy retry inside submit would never return to the JS that lifts the fault.
    const child = uringUnderFault('enter-eagain', 'after submit');
    assert.equal(child.signal, null, `hung or crashed: ${describeChild(child)}`);
    assert.equal(child.status, 0, describeChild(child));
    assert.deepEqual(child.report, allPages);
  });

  describe('9: short transfers', () => {
    let mount: string | undefined;
    before(function () {
      // A file system of 1 MiB under a sparse file of 4 MiB.
      const dir = scratch.file('small-fs');
      fs.mkdirSync(dir);
      const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
      if (mounted.status !== 0) {
        console.log(`      skipped: cannot mount a small tmpfs here (${(mounted.stderr || String(mounted.error)).trim()})`);
        this.skip();
      }
      mount = dir;
    });
    after(() => {
      if (mount !== undefined) spawnSync('umount', [mount]);
    });

    for (const engine of ['io_uring', 'threads'] as const) {
      it(`report the kernel's errno: ENOSPC when a sparse file's file system is full (${engine})`, async function () {
        if (engine === 'io_uring' && !uringHere) this.skip();
        const file = path.join(mount!, `full-${engine}.img`);
        const device = await Device.open(file, { size: 4 << 20, engine, direct: false });
        const slab = Slab.alloc(1 << 20, 2);
        try {
          await assert.rejects(device.run([{ op: 'write', offset: 0, buffers: [slab.page(0), slab.page(1)] }]), (error: NodeJS.ErrnoException) => {
            assert.equal(error.code, 'ENOSPC');
            assert.equal(error.syscall, 'pwritev');
            assert.equal(error.path, file);
            assert.match(error.message, /^ENOSPC: no space left on device, pwritev '.*' \(short write: \d+ of 2097152 bytes at offset 0\)$/);
            return true;
          });
        } finally {
          await device.close();
          slab.release();
          fs.rmSync(file);
        }
      });
    }
  });
});
