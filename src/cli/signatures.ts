import * as fs from 'node:fs';

/**
 * Known on-disk signatures in the first blocks of a device: what says "this
 * holds someone's data". The list is what blkid would find first for the
 * formats a Linux machine is likely to hold; a match is a reason to refuse to
 * write, not a full identification.
 */
export interface Signature {
  readonly name: string;
  /** Where it was found, for the message: `0xEF53 at byte 1080`. */
  readonly where: string;
}

interface Magic {
  readonly name: string;
  readonly offset: number;
  readonly bytes: Buffer;
  readonly shown: string;
}

function magic(name: string, offset: number, bytes: Buffer | string, shown?: string): Magic {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  return { name, offset, bytes: b, shown: shown ?? `'${b.toString('latin1').replace(/[^\x20-\x7e]/g, '.')}'` };
}

const MAGICS: readonly Magic[] = [
  magic('ext2/3/4', 1080, Buffer.from([0x53, 0xef]), '0xEF53'),
  magic('xfs', 0, 'XFSB'),
  magic('btrfs', 65600, '_BHRfS_M'),
  magic('LUKS', 0, Buffer.from('LUKS\xba\xbe', 'latin1'), "'LUKS\\xba\\xbe'"),
  // The swap signature ends the first page, whatever the page size was.
  magic('swap', 4086, 'SWAPSPACE2'),
  magic('swap', 65526, 'SWAPSPACE2'),
  magic('LVM2 physical volume', 512, 'LABELONE'),
  magic('Linux RAID (md 1.1)', 0, Buffer.from([0xfc, 0x4e, 0x2b, 0xa9]), '0xA92B4EFC'),
  magic('Linux RAID (md 1.2)', 4096, Buffer.from([0xfc, 0x4e, 0x2b, 0xa9]), '0xA92B4EFC'),
  // GPT's header sits in the second logical sector: byte 512 or 4096.
  magic('GPT partition table', 512, 'EFI PART'),
  magic('GPT partition table', 4096, 'EFI PART'),
  // Last: FAT, NTFS and MBR partition tables all end sector 0 with 55 AA.
  magic('MBR partition table or boot sector', 510, Buffer.from([0x55, 0xaa]), '0x55AA'),
];

/** Bytes read from the start: enough for every offset above. */
const SIGNATURE_SPAN = 65600 + 8;

/** The first known signature in `path`'s first blocks, if any (buffered read). */
export function findSignature(path: string): Signature | undefined {
  const head = Buffer.alloc(SIGNATURE_SPAN);
  const fd = fs.openSync(path, 'r');
  let length: number;
  try {
    length = fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  for (const m of MAGICS) {
    const end = m.offset + m.bytes.length;
    if (end <= length && head.subarray(m.offset, end).equals(m.bytes)) {
      return { name: m.name, where: `${m.shown} at byte ${m.offset}` };
    }
  }
  return undefined;
}
