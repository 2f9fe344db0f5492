/**
 * A seeded pseudo-random generator (mulberry32), so that the random workloads
 * write the same offsets on every run and every machine: a run can be
 * repeated, and two runs differ by the engine, not by their luck.
 */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** 32 random bits as an unsigned integer. */
  next32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /**
   * A uniform integer in [0, n), for n up to 2^53: 53 bits from two draws,
   * so that devices of more than 2^32 blocks are covered whole.
   */
  below(n: number): number {
    const high = this.next32() >>> 5;
    const low = this.next32() >>> 6;
    return Math.floor(((high * 2 ** 26 + low) / 2 ** 53) * n);
  }
}
