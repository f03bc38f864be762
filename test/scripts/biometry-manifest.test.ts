import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { withBiometrySection, withClipCalibration, withoutBiometrySection } from '../../scripts/biometry-manifest.js';

// As the Python exporter writes it (indent 1, its own number formatting), biometry last.
const EXPORTED = '{\n "name": "x",\n "threshold": 1e-05,\n "biometry": {\n  "interval": "normalised-conformal-outline",\n  "intervalScale": 2.2\n }\n}\n';

test('the biometry section is set, removed and given a clip part with every other byte unchanged', () => {
  const removed = withoutBiometrySection(EXPORTED);
  assert.is(removed, '{\n "name": "x",\n "threshold": 1e-05\n}\n');
  assert.is(withBiometrySection(removed, { intervalScale: 3 }), '{\n "name": "x",\n "threshold": 1e-05,\n "biometry": {\n  "intervalScale": 3\n }\n}\n');
  const withClip = withClipCalibration(EXPORTED, { intervalScale: 4 });
  assert.ok(withClip.startsWith('{\n "name": "x",\n "threshold": 1e-05,\n'), 'the exporter\'s formatting kept');
  assert.equal(JSON.parse(withClip).biometry, { interval: 'normalised-conformal-outline', intervalScale: 2.2, clip: { intervalScale: 4 } });
  assert.equal(JSON.parse(withClipCalibration(withClip, { intervalScale: 5 })).biometry.clip, { intervalScale: 5 }, 'replaced, not nested');
  assert.throws(() => withClipCalibration(removed, {}), /calibrate the 2D path first/);
});

test.run();
