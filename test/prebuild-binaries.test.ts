import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import {
  compareVersions,
  elfFacts,
  glibcFloor,
  has,
  maxGlibc,
  prebuildPath,
  requirePrebuilds,
  targets,
  tool,
  type ElfFacts,
} from './support/prebuilds';

/**
 * The four prebuilds of `npm run prebuild`, as readelf and objdump see them:
 * the right machine, stripped, the glibc ones on the GLIBC_2.28 floor, the
 * musl ones with nothing of glibc, and none needing a C++ runtime from the
 * system (Zig links libc++ in statically). The x64 musl one also goes
 * through musl's own dynamic loader, which resolves every libc symbol it
 * needs. (No musl Node is to be had here to load it in: see the README.)
 */

// What Node itself provides to an addon: N-API, and libuv (uv_async_*).
const fromNode = /^(napi_|node_api_|uv_)/;
// Weak references that every toolchain emits and nothing needs to define.
const weakNoise = new Set(['__gmon_start__', '_ITM_deregisterTMCloneTable', '_ITM_registerTMCloneTable', '__cxa_finalize']);
// The glibc libraries a glibc prebuild may need (all in every glibc >= 2.17).
const glibcLibraries = /^(libc\.so\.6|libpthread\.so\.0|libdl\.so\.2|libm\.so\.6|librt\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$/;

describe('prebuilds: the binaries', function () {
  this.timeout(120_000);
  const facts = new Map<string, ElfFacts>();

  before(function () {
    requirePrebuilds(this);
    if (!has('readelf') || !has('objdump')) throw new Error('readelf and objdump (binutils) are needed');
    for (const t of targets) facts.set(t.name, elfFacts(prebuildPath(t)));
  });

  for (const t of targets) {
    describe(t.name, () => {
      it(`is a 64-bit ${t.machine} shared object, stripped`, () => {
        const f = facts.get(t.name)!;
        assert.equal(f.elfClass, 'ELF64');
        assert.match(f.type, /^DYN/);
        assert.equal(f.machine, t.machine);
        assert.equal(f.interpreter, undefined, 'a shared object has no interpreter');
        assert.ok(!f.sections.includes('.symtab'), 'a symbol table is left: not stripped');
        assert.deepEqual(f.sections.filter((s) => s.startsWith('.debug')), [], 'debug sections are left');
        // The one entry point Node looks up in an N-API addon.
        assert.ok(f.definedSymbols.includes('napi_register_module_v1'), 'napi_register_module_v1 is not exported');
      });

      it('needs no C++ runtime of the system (libc++, libstdc++, libgcc_s)', () => {
        const f = facts.get(t.name)!;
        const cxx = f.needed.filter((n) => /^lib(std)?c\+\+|^libc\+\+abi|^libgcc_s|^libunwind/.test(n));
        assert.deepEqual(cxx, []);
        const cxxVersions = f.versions.filter((v) => /^(GLIBCXX|CXXABI|GCC)_/.test(v));
        assert.deepEqual(cxxVersions, [], `references ${cxxVersions.join(', ')}`);
      });

      if (t.libc === 'glibc') {
        it(`references no glibc symbol newer than GLIBC_${glibcFloor} (objdump -T)`, () => {
          const f = facts.get(t.name)!;
          const max = maxGlibc(f.versions);
          assert.ok(max, 'no GLIBC_ version at all: not linked against glibc?');
          const newer = f.versions.filter((v) => /^GLIBC_[0-9.]+$/.test(v) && compareVersions(v.slice(6), glibcFloor) > 0);
          assert.deepEqual(newer, [], `needs ${newer.join(', ')}`);
          console.log(`      ${t.name}: highest glibc version referenced: GLIBC_${max}; NEEDED ${f.needed.join(' ')}`);
          for (const lib of f.needed) assert.match(lib, glibcLibraries, `unexpected NEEDED ${lib}`);
        });
      } else {
        it('links no glibc: NEEDED is musl libc alone, and no GLIBC_ version', () => {
          const f = facts.get(t.name)!;
          assert.deepEqual(f.needed, ['libc.so'], `NEEDED ${f.needed.join(' ')}`);
          assert.deepEqual(f.versions.filter((v) => v.startsWith('GLIBC')), []);
          console.log(`      ${t.name}: NEEDED ${f.needed.join(' ')} (musl's loader answers to libc.so), no symbol versions`);
        });
      }

      if (t.arch === 'x64') {
        it('uses no instruction beyond baseline x86-64 (no AVX registers)', () => {
          const text = tool('objdump', ['-d', '--no-show-raw-insn', prebuildPath(t)]);
          const avx = text.split('\n').filter((l) => /%[yz]mm\d/.test(l));
          assert.deepEqual(avx.slice(0, 3), [], 'AVX instructions found');
        });
      }
    });
  }

  describe('linux-x64-musl under musl\'s dynamic loader', () => {
    const loader = '/lib/ld-musl-x86_64.so.1';
    it('resolves every libc symbol it needs; only Node\'s own (napi_*, uv_*) are left', function () {
      if (!fs.existsSync(loader)) {
        const why = `${loader} is missing (Debian's musl package: .ci/run installs it)`;
        if (process.env.CI) throw new Error(why);
        console.log(`      skipped: ${why}`);
        this.skip();
      }
      const file = prebuildPath(targets.find((t) => t.name === 'linux-x64-musl')!);
      // ldd mode: musl maps the library, loads what it NEEDS and binds every
      // symbol, reporting each one that nothing defines.
      const run = spawnSync(loader, ['--list', file], { encoding: 'utf8' });
      const text = `${run.stdout}\n${run.stderr}`;
      assert.match(text, /libc\.so => \/lib\/ld-musl-x86_64\.so\.1/, `musl did not take libc.so as itself:\n${text}`);
      const unresolved = [...text.matchAll(/Error relocating [^:]+: ([^:]+): symbol not found/g)].map((m) => m[1]);
      const notFromNode = unresolved.filter((s) => !fromNode.test(s) && !weakNoise.has(s));
      assert.deepEqual(notFromNode, [], `symbols musl does not define: ${notFromNode.join(', ')}`);
      // What is left must be what Node provides, or the check saw nothing.
      assert.ok(unresolved.some((s) => s.startsWith('napi_')), `no napi_ symbol reported; the loader said:\n${text}`);
      console.log(`      musl ${musl()} bound all libc symbols; ${unresolved.length} left for Node (napi_*, uv_*)`);
    });
  });
});

function musl(): string {
  const run = spawnSync('/lib/ld-musl-x86_64.so.1', [], { encoding: 'utf8' });
  return /Version ([0-9.]+)/.exec(`${run.stdout}${run.stderr}`)?.[1] ?? '(version unknown)';
}
