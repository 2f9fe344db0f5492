/**
 * Delta numbers are free-running unsigned 32-bit integers: they wrap from
 * 2^32 - 1 to 0, as the numbers a journal records on disk will. Comparisons
 * are made on the difference (as Linux compares jiffies), which is right as
 * long as the deltas compared are less than 2^31 apart; the deltas alive at
 * once (the open one and those in flight) are a handful.
 */

export function nextDelta(delta: number): number {
  return (delta + 1) >>> 0;
}

/** Whether delta `a` comes before delta `b`. */
export function deltaBefore(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/**
 * The buffer-state slot of a delta. The slot count is a power of two, so
 * 2^32 is a multiple of it and consecutive deltas keep distinct slots across
 * the wrap.
 */
export function slotOf(delta: number, slotCount: number): number {
  return delta & (slotCount - 1);
}

/** Enough slots for the open delta and `maxDeltas` in flight, as a power of two. */
export function slotCountFor(maxDeltas: number): number {
  let slots = 1;
  while (slots < maxDeltas + 1) slots *= 2;
  return slots;
}
