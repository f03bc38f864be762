import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resultsFile } from '../../bench/run.js';

test('a bench run writes the untracked results.local.json; --update the committed results.json', () => {
  assert.equal(resultsFile([]), { file: 'results.local.json', filters: [] });
  assert.equal(resultsFile(['encoder']), { file: 'results.local.json', filters: ['encoder'] });
  assert.equal(resultsFile(['--update', 'encoder']), { file: 'results.json', filters: ['encoder'] });
});

test.run();
