// Unit tests for the pure helpers in src/format.ts (compiled on the fly with esbuild).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { transform } from 'esbuild';
import { readFile } from 'node:fs/promises';

const src = await readFile(new URL('../src/format.ts', import.meta.url), 'utf8');
const { code } = await transform(src, { loader: 'ts', format: 'esm' });
const f = await import('data:text/javascript;base64,' + Buffer.from(code).toString('base64'));

test('numbers format compactly and right', () => {
  assert.equal(f.fmtCompact(999), '999');
  assert.equal(f.fmtCompact(1234), '1.23k');
  assert.equal(f.fmtCompact(12345), '12.3k');
  assert.equal(f.fmtCompact(1234567), '1.23M');
  assert.equal(f.fmtCompact(null), '—');
  assert.equal(f.fmtInt(1234567.4), '1,234,567');
  assert.equal(f.fmtPct(0.25), '25.0%');
  assert.equal(f.fmtMoney(12.5), '12.50');
  assert.equal(f.fmtMoney(0.000123), '0.00012');
  assert.equal(f.fmtMs(12.4), '12 ms');
  assert.equal(f.fmtMs(1500), '1.50 s');
  assert.equal(f.fmtDuration(3700), '1h 1m');
  assert.equal(f.fmtDuration(90000), '1d 1h');
  assert.equal(f.fmtAgo(1000, 61000), '1m ago');
  assert.equal(f.fmtAgo(10000, 1000), 'in 9s');
});

test('diff flattens nested snapshots and marks changed fields', () => {
  const before = { name: 't', weight: 1, quota: { tpm: 100, rpm: null }, allowed_models: ['a'] };
  const after = { name: 't', weight: 5, quota: { tpm: 100, rpm: 10 }, allowed_models: ['a', 'b'] };
  const d = f.diff(before, after);
  const byField = Object.fromEntries(d.map((r) => [r.field, r]));
  assert.equal(byField['name'].changed, false);
  assert.equal(byField['weight'].changed, true);
  assert.equal(byField['quota.tpm'].changed, false);
  assert.equal(byField['quota.rpm'].changed, true);
  assert.equal(byField['allowed_models'].changed, true);
  // creation: everything is new
  const c = f.diff(null, { a: 1 });
  assert.deepEqual(c, [{ field: 'a', before: undefined, after: 1, changed: true }]);
  // deletion
  assert.equal(f.diff({ a: 1 }, null)[0].changed, true);
  assert.equal(f.show(null), 'null');
  assert.equal(f.show(['x']), '["x"]');
});

test('bucket choice keeps at most 500 points', () => {
  assert.equal(f.pickBucket(3600e3), 'minute');
  assert.equal(f.pickBucket(86400e3), 'hour');
  assert.equal(f.pickBucket(7 * 86400e3), 'hour');
  assert.equal(f.pickBucket(30 * 86400e3), 'day');
  assert.equal(f.pickBucket(8 * 3600e3), 'minute');
});

test('form number parsing', () => {
  assert.equal(f.parseOptInt(''), null);
  assert.equal(f.parseOptInt('5', 1), 5);
  assert.match(f.parseOptInt('0', 1), /≥ 1/);
  assert.match(f.parseOptInt('1.5'), /whole/);
  assert.equal(f.parseOptFloat('0.5'), 0.5);
  assert.match(f.parseOptFloat('x'), /number/);
  assert.equal(f.nameProblem(''), 'Required.');
  assert.equal(f.nameProblem('ok'), null);
});
