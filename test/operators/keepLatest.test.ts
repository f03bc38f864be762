import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { from, lastValueFrom, map, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { keepLatest } from '../../src/operators/keepLatest.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.equal(actual, expected));

test('passes every value through while the stage is idle', () => {
  const drops: string[] = [];
  scheduler().run(({ cold, hot, expectObservable }) => {
    const result = hot('-a---b---c---|').pipe(keepLatest((v) => cold('--r|', { r: v }), { onDrop: (v) => drops.push(v) }));
    expectObservable(result).toBe('---a---b---c-|');
  });
  assert.equal(drops, []);
});

test('keeps only the newest value while busy, counts the drops, and processes the kept one next', () => {
  const drops: [string, number][] = [];
  scheduler().run(({ cold, hot, expectObservable, flush }) => {
    const stage = cold('---r|');
    const result = hot('-abcd-------|').pipe(
      keepLatest((v) => stage.pipe(map(() => v)), { onDrop: (v, count) => drops.push([v, count]) }),
    );
    expectObservable(result).toBe('----a---d---|');
    flush();
    assert.equal(drops, [['b', 1], ['c', 2]]);
  });
});

test('processes the kept value before completing when the source completes while busy', () => {
  const drops: string[] = [];
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const stage = cold('---r|');
    const result = hot('-ab|').pipe(keepLatest((v) => stage.pipe(map(() => v)), { onDrop: (v) => drops.push(v) }));
    expectObservable(result).toBe('----a---b|');
    expectSubscriptions(stage.subscriptions).toBe(['-^---!', '-----^---!']);
  });
  assert.equal(drops, []);
});

test('a source error ends the stream at once and unsubscribes the running stage', () => {
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const stage = cold('---r|');
    expectObservable(hot('-ab#').pipe(keepLatest(() => stage))).toBe('---#');
    expectSubscriptions(stage.subscriptions).toBe('-^-!');
  });
});

test('a stage error ends the stream and unsubscribes the source', () => {
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a-b---|');
    expectObservable(source.pipe(keepLatest(() => cold('--#')))).toBe('---#');
    expectSubscriptions(source.subscriptions).toBe('^--!');
  });
});

test('unsubscribing releases the source and the running stage', () => {
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a-b-c-|');
    const stage = cold('----r|');
    expectObservable(source.pipe(keepLatest(() => stage)), '^--!').toBe('---');
    expectSubscriptions(source.subscriptions).toBe('^--!');
    expectSubscriptions(stage.subscriptions).toBe('-^-!');
  });
});

test('takes promises as the stage; a synchronous burst keeps the first and the last value', async () => {
  const drops: number[] = [];
  const results = await lastValueFrom(
    from([1, 2, 3, 4]).pipe(
      keepLatest(async (v: number) => v * 10, { onDrop: (v) => drops.push(v) }),
      toArray(),
    ),
  );
  assert.equal(results, [10, 40]);
  assert.equal(drops, [2, 3]);
});

test('undefined is a value like any other', async () => {
  const results = await lastValueFrom(from([0, undefined]).pipe(keepLatest(async (v) => v), toArray()));
  assert.equal(results, [0, undefined]);
});

test.run();
