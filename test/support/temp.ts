import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * A fresh directory under the system's temp directory (ext4 here, so
 * O_DIRECT works), removed by `remove()`.
 */
export class TempDir {
  readonly path = fs.mkdtempSync(path.join(os.tmpdir(), 'blockfork-'));
  private count = 0;

  /** A path for a new file in the directory. */
  file(): string {
    return path.join(this.path, `disk-${this.count++}.img`);
  }

  remove(): void {
    fs.rmSync(this.path, { recursive: true, force: true });
  }
}
