import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, isNativeErrno, type NativeEngine, type NativeRequest } from '../src/native';
import { Device } from '../src/io/device';
import { Slab } from '../src/io/slab';
import type { IoRequest } from '../src/io/request';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * G6: every invalid argument, at the Device and at the addon itself, throws
 * (or rejects with) a TypeError or RangeError with a clear message before any
 * I/O, and nothing a caller passes crashes the process.
 */

const root = path.resolve(__dirname, '..');
const PAGE = 4096;
const SIZE = 256 * PAGE;

type Shape = { name: string; message: string | RegExp };
const typeError = (message: string | RegExp): Shape => ({ name: 'TypeError', message });
const rangeError = (message: string | RegExp): Shape => ({ name: 'RangeError', message });

describe('bad input', () => {
  let scratch: ScratchDir;
  let slab: Slab;

  before(() => {
    scratch = makeScratchDir('bad-input');
    slab = Slab.alloc(PAGE, 32);
  });
  after(() => {
    slab.release();
    scratch.remove();
  });

  describe('Device.open', () => {
    const cases: [string, unknown, unknown, Shape][] = [
      ['an empty path', '', {}, typeError('path must be a non-empty string without NUL bytes, got ""')],
      ['a path with a NUL byte', 'a\0b', {}, typeError('path must be a non-empty string without NUL bytes, got "a\\u0000b"')],
      ['a path that is not a string', 123, {}, typeError('path must be a non-empty string without NUL bytes, got 123')],
      ['options that are not an object', 'x.img', null, typeError('options must be an object, got null')],
      ['queueDepth 0', 'x.img', { queueDepth: 0 }, rangeError('queueDepth must be an integer from 1 to 4096, got 0')],
      ['queueDepth 5000', 'x.img', { queueDepth: 5000 }, rangeError('queueDepth must be an integer from 1 to 4096, got 5000')],
      ['queueDepth 1.5', 'x.img', { queueDepth: 1.5 }, rangeError('queueDepth must be an integer from 1 to 4096, got 1.5')],
      ['queueDepth "8"', 'x.img', { queueDepth: '8' }, rangeError('queueDepth must be an integer from 1 to 4096, got "8"')],
      ['engine "foo"', 'x.img', { engine: 'foo' }, typeError(`engine must be 'auto', 'io_uring' or 'threads', got "foo"`)],
      ['size -1', 'x.img', { size: -1 }, rangeError('size must be a positive integer number of bytes, got -1')],
      ['size 0', 'x.img', { size: 0 }, rangeError('size must be a positive integer number of bytes, got 0')],
      ['size 1.5', 'x.img', { size: 1.5 }, rangeError('size must be a positive integer number of bytes, got 1.5')],
      ['size NaN', 'x.img', { size: NaN }, rangeError('size must be a positive integer number of bytes, got NaN')],
      ['size 2^53', 'x.img', { size: 2 ** 53 }, rangeError('size must be a positive integer number of bytes, got 9007199254740992')],
      ['size as a bigint', 'x.img', { size: 4096n }, rangeError('size must be a positive integer number of bytes, got 4096n')],
      ['direct "yes"', 'x.img', { direct: 'yes' }, typeError('direct must be a boolean, got "yes"')],
      ['readOnly 1', 'x.img', { readOnly: 1 }, typeError('readOnly must be a boolean, got 1')],
    ];
    for (const [what, file, options, shape] of cases) {
      it(`refuses ${what}`, async () => {
        const where = typeof file === 'string' && file.length > 0 && !file.includes('\0') ? scratch.file(file) : file;
        await assert.rejects(Device.open(where as string, options as never), shape);
      });
    }

    it('leaves nothing behind for refused options', () => {
      assert.deepEqual(fs.readdirSync(scratch.path), []);
    });
  });

  describe('requests', () => {
    let device: Device;
    let unit: number;
    let align: number;

    before(async () => {
      device = await Device.open(scratch.file('requests.img'), { size: SIZE, queueDepth: 4 });
      unit = device.geometry.logicalSectorSize;
      align = device.geometry.memoryAlignment;
    });
    after(async () => {
      await device.close();
    });

    const page = (i = 0) => slab.page(i);
    const read = (request: Partial<Record<keyof IoRequest, unknown>>): IoRequest => ({ op: 'read', offset: 0, buffers: [page()], ...request }) as IoRequest;

    const cases: [string, () => unknown, () => Shape][] = [
      ['a misaligned offset', () => [read({ offset: 1 })], () => rangeError(`request 0: offset 1 is not a multiple of the sector size ${unit}`)],
      [
        'a misaligned buffer address (a page at +1)',
        () => [read({ buffers: [page().subarray(1, 1 + unit)] })],
        () => rangeError(`request 0: buffer 0 address is not aligned to ${align} bytes (use slab memory)`),
      ],
      [
        'a misaligned length',
        () => [read({ buffers: [page().subarray(0, unit + 1)] })],
        () => rangeError(`request 0: buffer 0 length ${unit + 1} is not a positive multiple of the sector size ${unit}`),
      ],
      [
        'a zero-length buffer',
        () => [read({ buffers: [page().subarray(0, 0)] })],
        () => rangeError(`request 0: buffer 0 length 0 is not a positive multiple of the sector size ${unit}`),
      ],
      [
        'an offset past the end',
        () => [read({ offset: SIZE })],
        () => rangeError(`request 0: bytes ${SIZE}..${SIZE + PAGE} reach past the end of the device (${SIZE} bytes)`),
      ],
      [
        'a request that straddles the end',
        () => [read({ offset: SIZE - unit })],
        () => rangeError(`request 0: bytes ${SIZE - unit}..${SIZE - unit + PAGE} reach past the end of the device (${SIZE} bytes)`),
      ],
      ['a negative offset', () => [read({ offset: -unit })], () => rangeError('request 0: offset must be a non-negative integer')],
      ['a NaN offset', () => [read({ offset: NaN })], () => rangeError('request 0: offset must be a non-negative integer')],
      ['an infinite offset', () => [read({ offset: Infinity })], () => rangeError('request 0: offset must be a non-negative integer')],
      ['a fractional offset', () => [read({ offset: 1.5 })], () => rangeError('request 0: offset must be a non-negative integer')],
      ['an offset of 2^53', () => [read({ offset: 2 ** 53 })], () => rangeError('request 0: offset must be a non-negative integer')],
      ['a string offset', () => [read({ offset: '0' })], () => typeError('request 0: offset must be a number')],
      ['a bigint offset', () => [read({ offset: 0n })], () => typeError('request 0: offset must be a number')],
      ['a missing offset', () => [read({ offset: undefined })], () => typeError('request 0: offset must be a number')],
      ['buffers that are a Buffer, not an array', () => [read({ buffers: page() })], () => typeError('request 0: buffers must be an array of Uint8Arrays')],
      ['missing buffers', () => [read({ buffers: undefined })], () => typeError('request 0: buffers must be an array of Uint8Arrays')],
      ['a Float64Array among the buffers', () => [read({ buffers: [page(), new Float64Array(512)] })], () => typeError('request 0: buffer 1 must be a Uint8Array or Buffer')],
      ['a string among the buffers', () => [read({ buffers: ['x'.repeat(PAGE)] })], () => typeError('request 0: buffer 0 must be a Uint8Array or Buffer')],
      ['null among the buffers', () => [read({ buffers: [null] })], () => typeError('request 0: buffer 0 must be a Uint8Array or Buffer')],
      ['an ArrayBuffer among the buffers', () => [read({ buffers: [slab.memory] })], () => typeError('request 0: buffer 0 must be a Uint8Array or Buffer')],
      ['a DataView among the buffers', () => [read({ buffers: [new DataView(slab.memory, 0, PAGE)] })], () => typeError('request 0: buffer 0 must be a Uint8Array or Buffer')],
      [
        'a Uint8ClampedArray among the buffers',
        () => [read({ buffers: [new Uint8ClampedArray(slab.memory, 0, PAGE)] })],
        () => typeError('request 0: buffer 0 must be a Uint8Array or Buffer'),
      ],
      ['no buffers at all', () => [read({ buffers: [] })], () => rangeError('request 0: buffers must hold 1 to 1024 views, got 0')],
      [
        'more iovecs than IOV_MAX',
        () => [read({ buffers: Array.from({ length: 1025 }, () => page().subarray(0, unit)) })],
        () => rangeError('request 0: buffers must hold 1 to 1024 views, got 1025'),
      ],
      ['requests that are not an array', () => 'read', () => typeError('requests must be an array, got "read"')],
      ['a request that is null', () => [null], () => typeError('request 0 must be an object, got null')],
      ['an invalid op', () => [read({ op: 'erase' })], () => typeError(`request 0: op must be 'read' or 'write', got "erase"`)],
      ['a numeric op', () => [read({ op: 0 })], () => typeError(`request 0: op must be 'read' or 'write', got 0`)],
      ['a non-boolean dsync', () => [read({ op: 'write', dsync: 'yes' })], () => typeError('request 0: dsync must be a boolean')],
      ['a dsync of 1', () => [read({ op: 'write', dsync: 1 })], () => typeError('request 0: dsync must be a boolean')],
      [
        'a bad second request (named by its index)',
        () => [read({}), read({ offset: 3 })],
        () => rangeError(`request 1: offset 3 is not a multiple of the sector size ${unit}`),
      ],
    ];
    for (const [what, requests, shape] of cases) {
      it(`refuses ${what}`, async () => {
        const before = device.queueDepth;
        await assert.rejects(device.submit(requests() as IoRequest[]), shape());
        await assert.rejects(device.run(requests() as IoRequest[]), shape());
        assert.equal(before, device.queueDepth);
      });
    }

    it('refuses a whole batch when one request is bad: nothing of it is written', async () => {
      const good = page(1);
      good.fill(0xab);
      await assert.rejects(
        device.submit([
          { op: 'write', offset: 0, buffers: [good] },
          { op: 'write', offset: PAGE, buffers: [good, new Float64Array(8) as unknown as Uint8Array] },
        ]),
        typeError('request 1: buffer 1 must be a Uint8Array or Buffer'),
      );
      await device.flush();
      assert.ok(fs.readFileSync(device.path).subarray(0, 2 * PAGE).every((x) => x === 0), 'the good request was not run');
    });

    it('takes exactly IOV_MAX (1024) iovecs in one request', async () => {
      const pieces = Array.from({ length: 1024 }, (_, i) => {
        const p = slab.page(i % 32).subarray(0, unit);
        return p;
      });
      const results = await device.submit([{ op: 'read', offset: 0, buffers: pieces }]);
      assert.deepEqual(results, [{ bytes: 1024 * unit }]);
    });

    it('resolves an empty batch at once, with no results', async () => {
      assert.deepEqual(await device.submit([]), []);
      await device.run([]);
    });

    it('refuses a released slab for I/O with a RangeError', async () => {
      const doomed = Slab.alloc(PAGE, 2);
      const view = doomed.page(0);
      doomed.release();
      await assert.rejects(device.submit([{ op: 'write', offset: 0, buffers: [view] }]), rangeError('request 0: buffer 0 has been released (its memory is gone)'));
    });

    it('refuses to release a slab while I/O uses it; the I/O completes, and then release works', async () => {
      const busy = Slab.alloc(PAGE, 16);
      const pages = Array.from({ length: 16 }, (_, i) => busy.page(i));
      pages.forEach((p, i) => p.fill(i + 1));
      // Completions are delivered asynchronously, never inside submit(): the batch is in flight here.
      const inFlight = device.submit(pages.map((p, i) => ({ op: 'write' as const, offset: i * PAGE, buffers: [p] })));
      assert.throws(() => busy.release(), { name: 'Error', message: 'releaseSlab: the slab is in use by 16 buffer(s) of I/O requests or checksum jobs in flight' });
      assert.equal(busy.byteLength, 16 * PAGE, 'a refused release leaves the slab whole');
      const results = await inFlight;
      assert.deepEqual(
        results.map((r) => r.bytes),
        new Array(16).fill(PAGE),
      );
      const image = fs.readFileSync(device.path);
      for (let i = 0; i < 16; i++) assert.ok(image.subarray(i * PAGE, (i + 1) * PAGE).every((x) => x === i + 1), `block ${i}`);
      busy.release();
      assert.equal(pages[0].length, 0);
    });
  });

  describe('the addon called directly', () => {
    const pageSize = native.pageSize;
    const allocMessage = `allocSlab: byteLength must be a positive multiple of the page size (${pageSize})`;

    it('allocSlab refuses sizes that are not positive multiples of the page size', () => {
      for (const bad of [-1, 0, 1.5, 3, pageSize + 1, NaN, Infinity, -Infinity, 2 ** 41, 2 ** 53, '4096', 4096n, null, undefined, {}, []]) {
        assert.throws(() => native.allocSlab(bad as number), rangeError(allocMessage), `allocSlab(${String(bad)})`);
      }
      assert.throws(() => (native.allocSlab as () => ArrayBuffer)(), rangeError(allocMessage));
    });

    it('releaseSlab refuses what is not a slab, and takes a released one again harmlessly', () => {
      assert.throws(() => native.releaseSlab(new ArrayBuffer(pageSize)), typeError('releaseSlab: this ArrayBuffer is not a slab of this thread'));
      for (const bad of [undefined, null, 1, 'x', {}, new Uint8Array(pageSize), new SharedArrayBuffer(8)]) {
        assert.throws(() => native.releaseSlab(bad as ArrayBuffer), typeError("releaseSlab: expected the slab's ArrayBuffer"));
      }
      const memory = native.allocSlab(pageSize);
      native.releaseSlab(memory);
      native.releaseSlab(memory);
      assert.equal(memory.byteLength, 0);
    });

    it('copy refuses different lengths and anything but byte views', () => {
      assert.throws(() => native.copy(Buffer.alloc(8), Buffer.alloc(16)), rangeError('copy: target (8 bytes) and source (16 bytes) differ in length'));
      for (const [a, b] of [[undefined, undefined], ['a', 'b'], [new Uint16Array(4), new Uint16Array(4)], [Buffer.alloc(4), new Int8Array(4)], [Buffer.alloc(4), null]] as const) {
        assert.throws(() => native.copy(a as unknown as Uint8Array, b as unknown as Uint8Array), typeError('copy: target and source must be Uint8Arrays or Buffers'));
      }
      native.copy(Buffer.alloc(0), Buffer.alloc(0));
    });

    it('open refuses a bad path or bad flags', () => {
      const flags = { readOnly: true, direct: false, create: false, size: 0 };
      assert.throws(() => native.open(123 as unknown as string, null as unknown as typeof flags), typeError('open: expected (path: string, flags: object)'));
      assert.throws(() => (native.open as () => unknown)(), typeError('open: expected (path: string, flags: object)'));
      assert.throws(() => native.open('', flags), typeError('open: path must be a non-empty string without NUL bytes'));
      assert.throws(() => native.open('a\0b', flags), typeError('open: path must be a non-empty string without NUL bytes'));
      assert.throws(() => native.open('x', {} as typeof flags), typeError('open: flags.readOnly must be a boolean'));
      assert.throws(() => native.open('x', { ...flags, direct: 1 as unknown as boolean }), typeError('open: flags.direct must be a boolean'));
      for (const size of [-1, 1.5, NaN, '1', 2 ** 53]) {
        assert.throws(() => native.open('x', { ...flags, size: size as number }), rangeError('open: flags.size must be a non-negative integer'));
      }
    });

    it('close refuses what is not a descriptor, and never closes one it was not given (child process)', () => {
      // In a child: were NaN or 1.5 taken for 0 or 1, the child's stdin or stdout would close.
      const script = `
        const native = require(${JSON.stringify(path.join(root, 'src/native.ts'))}).native;
        const out = [];
        for (const fd of [NaN, 1.5, 0.5, -1, -0.5, 2 ** 31, Infinity, '1', null, undefined]) {
          try { native.close(fd); out.push('closed ' + String(fd)); } catch (e) { out.push(e.name + ': ' + e.message); }
        }
        require('fs').writeSync(1, JSON.stringify(out));`;
      const child = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: root, encoding: 'utf8' });
      assert.equal(child.status, 0, child.stderr);
      const range = 'RangeError: close: file descriptor must be a non-negative integer';
      const type = 'TypeError: close: expected a file descriptor';
      assert.deepEqual(JSON.parse(child.stdout), [range, range, range, range, range, range, range, type, type, type]);
    });

    it('dataExtent refuses what is not a descriptor or an offset, and answers a closed descriptor with EBADF', () => {
      for (const fd of [NaN, 1.5, -1, 2 ** 31, Infinity]) {
        assert.throws(() => native.dataExtent(fd, 0), rangeError('dataExtent: file descriptor must be a non-negative integer'));
      }
      for (const fd of ['1', null, undefined]) assert.throws(() => native.dataExtent(fd as unknown as number, 0), typeError('dataExtent: expected a file descriptor'));
      for (const offset of [-1, 1.5, NaN, 2 ** 53, Infinity]) {
        assert.throws(() => native.dataExtent(0, offset), rangeError('dataExtent: offset must be a non-negative integer'));
      }
      for (const offset of ['0', null, undefined]) assert.throws(() => native.dataExtent(0, offset as unknown as number), typeError('dataExtent: expected (fd, offset)'));
      const file = path.join(scratch.path, 'extent.img');
      fs.writeFileSync(file, Buffer.alloc(4096, 1));
      const fd = fs.openSync(file, 'r');
      fs.closeSync(fd);
      assert.deepEqual(native.dataExtent(fd, 0), { errno: -9, syscall: 'lseek' });
    });

    it('createEngine refuses bad options', () => {
      const good = { fd: 0, kind: 'threads', queueDepth: 4, sectorSize: 512, memoryAlignment: 512, size: 4096, readOnly: true };
      const cases: [unknown, Shape][] = [
        [undefined, typeError('createEngine: expected an options object')],
        [{}, typeError('createEngine: fd must be a file descriptor')],
        [{ ...good, fd: -1 }, typeError('createEngine: fd must be a file descriptor')],
        [{ ...good, fd: 1.5 }, typeError('createEngine: fd must be a file descriptor')],
        [{ ...good, kind: 'foo' }, typeError("createEngine: kind must be 'io_uring' or 'threads'")],
        [{ ...good, queueDepth: 0 }, rangeError('createEngine: queueDepth must be an integer from 1 to 4096')],
        [{ ...good, queueDepth: 4097 }, rangeError('createEngine: queueDepth must be an integer from 1 to 4096')],
        [{ ...good, sectorSize: 500 }, rangeError('createEngine: sectorSize must be a power of two')],
        [{ ...good, sectorSize: 0 }, rangeError('createEngine: sectorSize must be a power of two')],
        [{ ...good, memoryAlignment: 3 }, rangeError('createEngine: memoryAlignment must be a power of two')],
        [{ ...good, size: -1 }, rangeError('createEngine: size must be a non-negative integer')],
        [{ ...good, readOnly: 'no' }, typeError('createEngine: readOnly must be a boolean')],
      ];
      for (const [options, shape] of cases) {
        assert.throws(() => native.createEngine(options as never), shape, JSON.stringify(options));
      }
    });

    describe('an engine', () => {
      let engine: NativeEngine;
      let fd: number;
      before(() => {
        const opened = native.open(scratch.file('raw-engine.img'), { readOnly: false, direct: true, create: true, size: SIZE });
        assert.ok(!isNativeErrno(opened));
        fd = opened.fd;
        const created = native.createEngine({
          fd,
          kind: 'threads',
          queueDepth: 2,
          sectorSize: opened.logicalSectorSize,
          memoryAlignment: opened.memoryAlignment,
          size: opened.size,
          readOnly: false,
        });
        assert.ok(!isNativeErrno(created));
        engine = created;
      });
      after(() => {
        engine.close();
        native.close(fd);
      });

      it('refuses an empty batch, a missing callback, and calls on something that is not an engine', () => {
        const noop = () => undefined;
        assert.throws(() => engine.submit([], noop), rangeError('submit: the batch holds no request'));
        const request: NativeRequest = { op: 0, offset: 0, buffers: [slab.page(0)], dsync: false };
        assert.throws(() => engine.submit([request], undefined as never), typeError('submit: expected (requests: array, done: function)'));
        assert.throws(() => engine.submit({} as never, noop), typeError('submit: expected (requests: array, done: function)'));
        assert.throws(() => engine.submit([{ ...request, op: 2 as 0 }], noop), typeError('request 0: op must be 0 (read) or 1 (write)'));
        assert.throws(() => engine.flush(undefined as never), typeError('flush: expected (done: function)'));
        assert.throws(() => engine.submit.call({} as NativeEngine, [request], noop), TypeError);
        assert.throws(() => engine.flush.call(null as unknown as NativeEngine, noop), TypeError);
        // An Engine built by hand has nothing behind it: it acts closed.
        const Engine = (engine as object).constructor as new (...args: unknown[]) => NativeEngine;
        assert.throws(() => new Engine({}), typeError('createEngine: fd must be a file descriptor'));
        const options = { fd, kind: 'threads', queueDepth: 1, sectorSize: 512, memoryAlignment: 512, size: SIZE, readOnly: false };
        for (const made of [new Engine(), new Engine(options)]) {
          assert.throws(() => made.submit([request], noop), { code: 'ERR_DEVICE_CLOSED', message: 'the device is closed' });
          assert.throws(() => made.flush(noop), { code: 'ERR_DEVICE_CLOSED' });
          made.close();
        }
        assert.equal(engine.inFlight, 0, 'nothing refused was queued');
      });

      it('refuses to close with requests in flight, and delivers them', async () => {
        const done = new Promise<number[]>((resolve) => engine.submit([{ op: 1, offset: 0, buffers: [slab.page(0)], dsync: false }], resolve));
        assert.equal(engine.inFlight, 1);
        assert.throws(() => engine.close(), { code: 'ERR_BUSY', message: 'close: 1 request(s) still in flight' });
        assert.deepEqual([...(await done)], [PAGE]);
        assert.equal(engine.inFlight, 0);
      });
    });

    it('survives random garbage thrown at every function of the addon (fast-check, child process)', function () {
      this.timeout(120_000);
      // In a child whose working directory is scratch space: a random call
      // may open or create files, and a crash must not take mocha with it.
      const cwd = fs.mkdtempSync(path.join(scratch.path, 'fuzz-'));
      const script = `
        const fc = require('fast-check');
        const native = require(${JSON.stringify(path.join(root, 'src/native.ts'))}).native;
        const opened = native.open('fuzz.img', { readOnly: false, direct: true, create: true, size: 1 << 20 });
        const engine = native.createEngine({ fd: opened.fd, kind: 'threads', queueDepth: 2, sectorSize: opened.logicalSectorSize,
          memoryAlignment: opened.memoryAlignment, size: opened.size, readOnly: false });
        const slab = native.allocSlab(native.pageSize * 4);
        const pending = [];
        let calls = 0, thrown = 0, nonErrors = 0;
        const garbage = fc.oneof(
          fc.anything({ withBigInt: true, withTypedArray: true, withNullPrototype: true, withMap: true, withSet: true, withDate: true, withSparseArray: true }),
          fc.constantFrom(NaN, -0, Infinity, 2 ** 53, -1, 1.5, 4096, 1 << 20, '', 'a\\0b', [], {}, null, undefined),
          fc.constantFrom(new Uint8Array(slab, 0, 4096), new Uint8Array(slab, 1, 4096), new Float64Array(8), slab, Buffer.alloc(4096)),
          fc.record({ op: fc.constantFrom(0, 1, 2, '0', -1), offset: fc.oneof(fc.integer(), fc.double(), fc.constant(4096)),
            buffers: fc.array(fc.constantFrom(new Uint8Array(slab, 0, 4096), new Uint8Array(slab, 4096, 512), 'x', null), { maxLength: 3 }),
            dsync: fc.oneof(fc.boolean(), fc.anything()) }, { requiredKeys: [] }),
        );
        const targets = {
          allocSlab: (a) => native.allocSlab(a),
          releaseSlab: (a) => native.releaseSlab(a),
          copy: (a, b) => native.copy(a, b),
          open: (a, b) => native.open(a, b),
          close: (a) => { if (typeof a === 'number' && a >= 0 && a < 1024) return; return native.close(a); },
          dataExtent: (a, b) => native.dataExtent(a, b),
          createEngine: (a) => native.createEngine(a),
          submit: (a, b) => { pending.push(new Promise((resolve) => { try { engine.submit(a, resolve); } catch (e) { resolve(); throw e; } })); },
          submitBatch: (a, b) => { pending.push(new Promise((resolve) => { try { engine.submit([a, b], resolve); } catch (e) { resolve(); throw e; } })); },
          flush: (a) => engine.flush(a),
          probe: () => native.probeIoUring(),
        };
        fc.assert(fc.property(fc.constantFrom(...Object.keys(targets)), garbage, garbage, (name, a, b) => {
          calls++;
          let result;
          try { result = targets[name](a, b); } catch (e) { thrown++; if (!(e instanceof Error)) nonErrors++; return; }
          // Whatever was made by chance is let go again.
          if (result instanceof ArrayBuffer && result !== slab) { try { native.releaseSlab(result); } catch {} }
          if (result && typeof result === 'object' && typeof result.fd === 'number') native.close(result.fd);
          if (result && typeof result === 'object' && typeof result.close === 'function') { try { result.close(); } catch {} }
        }), { numRuns: 5000, seed: 20250101 });
        Promise.all(pending).then(() => {
          console.log(JSON.stringify({ calls, thrown, nonErrors }));
        });`;
      const child = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
        cwd,
        encoding: 'utf8',
        timeout: 110_000,
        env: { ...process.env, NODE_PATH: path.join(root, 'node_modules'), TS_NODE_PROJECT: path.join(root, 'tsconfig.json') },
      });
      assert.equal(child.signal, null, `the child died of ${child.signal}: ${child.stderr}`);
      assert.equal(child.status, 0, child.stderr);
      const { calls, thrown, nonErrors } = JSON.parse(child.stdout) as { calls: number; thrown: number; nonErrors: number };
      assert.equal(calls, 5000);
      assert.ok(thrown > calls / 2, `most garbage is refused (${thrown} of ${calls})`);
      assert.equal(nonErrors, 0, 'everything thrown is an Error');
    });
  });
});
