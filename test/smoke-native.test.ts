import { strict as assert } from 'node:assert';
import { native } from '../src/native';

describe('native addon', () => {
  it('loads and reports the system page size', () => {
    assert.equal(typeof native.pageSize, 'number');
    assert.ok(native.pageSize >= 4096 && (native.pageSize & (native.pageSize - 1)) === 0);
  });
});
