import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { replaceSection } from '../../scripts/docs-section.js';

const BEGIN = '<!-- s: begin -->';
const END = '<!-- s: end -->';

test('replaces only the marked section, keeping what is around it', () => {
  const text = `# Doc\n\nbefore\n${BEGIN}\nold\n${END}\nafter\n`;
  assert.is(replaceSection(text, `${BEGIN}\nnew\n${END}`, BEGIN, END), `# Doc\n\nbefore\n${BEGIN}\nnew\n${END}\nafter\n`);
});

test('appends the section when the document has none, or only a begin marker', () => {
  assert.is(replaceSection('# Doc\n\n', `${BEGIN}\nnew\n${END}`, BEGIN, END), `# Doc\n\n${BEGIN}\nnew\n${END}\n`);
  assert.ok(replaceSection(`x\n${BEGIN}\n`, `${BEGIN}\nnew\n${END}`, BEGIN, END).endsWith(`${BEGIN}\nnew\n${END}\n`));
});

test('a section with $ patterns is written as it is', () => {
  assert.is(replaceSection(`${BEGIN}\n${END}`, `${BEGIN}\n$& costs $1\n${END}`, BEGIN, END), `${BEGIN}\n$& costs $1\n${END}`);
});

test.run();
