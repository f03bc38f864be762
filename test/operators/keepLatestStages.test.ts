import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { from, lastValueFrom, Subject, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { keepLatestStages } from '../../src/operators/keepLatestStages.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.equal(actual, expected));

/** Both stages driven by hand: each call is a Subject the test finishes; `log` records when each stage started. */
function handDriven() {
  const log: string[] = [];
  const running = new Map<string, Subject<string>>();
  const stage = (name: string) => (value: string) => {
    log.push(`${name}(${value})`);
    const subject = new Subject<string>();
    running.set(`${name}(${value})`, subject);
    return subject;
  };
  const finish = (call: string, output: string) => {
    const subject = running.get(call)!;
    running.delete(call);
    subject.next(output);
    subject.complete();
  };
  return { log, first: stage('first'), second: stage('second'), finish };
}

test('the first stage of the next value runs while the second stage of the previous one runs', () => {
  const { log, first, second, finish } = handDriven();
  const source = new Subject<string>();
  const results: string[] = [];
  const drops: [string, number][] = [];
  source.pipe(keepLatestStages(first, second, { onDrop: (value, count) => drops.push([value, count]) })).subscribe((result) => results.push(result));
  source.next('a');
  finish('first(a)', 'A');
  assert.equal(log, ['first(a)', 'second(A)']);
  source.next('b');
  assert.equal(log.at(-1), 'first(b)', 'b is encoded while A is analysed');
  source.next('c');
  finish('first(b)', 'B');
  source.next('d');
  assert.equal(log, ['first(a)', 'second(A)', 'first(b)'], 'B waits for the second stage; the first stage waits for B to be taken');
  assert.equal(drops, [['c', 1]], 'c was replaced by d before the first stage could start it');
  finish('second(A)', 'a done');
  assert.equal(log.slice(3), ['second(B)', 'first(d)']);
  assert.equal(results, ['a done']);
  finish('first(d)', 'D');
  finish('second(B)', 'b done');
  finish('second(D)', 'd done');
  assert.equal(results, ['a done', 'b done', 'd done']);
});

test('on a marble timeline: the stages overlap, and the kept value goes through both before completion', () => {
  const drops: string[] = [];
  scheduler().run(({ cold, hot, expectObservable }) => {
    // first: 2 frames, second: 4 frames; alone in one stage a value would take 6.
    const result = hot('-a-b-c-|').pipe(
      keepLatestStages(
        (v: string) => cold('-x|', { x: v.toUpperCase() }),
        (v: string) => cold('---y|', { y: v }),
        { onDrop: (v) => drops.push(v) },
      ),
    );
    // a: first 1-3 (A at 2), second 2-6. b: first 3-5 (B at 4), second 6-10. c: first 6-8, once B is taken; second
    // 10-14. One stage after the other, b and c would finish at 12 and 18.
    expectObservable(result).toBe('-----A---B---C|');
  });
  assert.equal(drops, []);
});

test('a source error ends the stream at once and unsubscribes both running stages', () => {
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const firstStage = cold('-x|');
    const secondStage = cold('-----y|');
    expectObservable(hot('-a-b#').pipe(keepLatestStages(() => firstStage, () => secondStage))).toBe('----#');
    expectSubscriptions(firstStage.subscriptions).toBe(['-^-!', '---^!']);
    expectSubscriptions(secondStage.subscriptions).toBe('--^-!');
  });
});

test('an error of either stage ends the stream and unsubscribes the source', () => {
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a-b---|');
    expectObservable(source.pipe(keepLatestStages(() => cold('--#'), () => cold('-y|')))).toBe('---#');
    expectSubscriptions(source.subscriptions).toBe('^--!');
  });
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a-b---|');
    expectObservable(source.pipe(keepLatestStages(() => cold('-x|'), () => cold('--#')))).toBe('----#');
    expectSubscriptions(source.subscriptions).toBe('^---!');
  });
});

test('unsubscribing releases the source and both stages', () => {
  scheduler().run(({ cold, hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a-b-c-|');
    const firstStage = cold('-x|');
    const secondStage = cold('-----y|');
    expectObservable(source.pipe(keepLatestStages(() => firstStage, () => secondStage)), '^----!').toBe('------');
    expectSubscriptions(source.subscriptions).toBe('^----!');
    expectSubscriptions(secondStage.subscriptions).toBe('--^--!');
  });
});

test('takes promises as stages; a synchronous burst keeps the first and the last value', async () => {
  const drops: number[] = [];
  const results = await lastValueFrom(
    from([1, 2, 3, 4]).pipe(
      keepLatestStages(async (v: number) => v * 10, async (v: number) => v + 1, { onDrop: (v) => drops.push(v) }),
      toArray(),
    ),
  );
  assert.equal(results, [11, 41]);
  assert.equal(drops, [2, 3]);
});

test.run();
