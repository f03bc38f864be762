/** Child process of test/report/atomic-write.test.ts: starts replacing argv[2] with 64 MiB, and exits 5 ms later. */
import { writeFileAtomic } from '../../src/report/atomic-write.js';

setTimeout(() => process.exit(0), 5);
void writeFileAtomic(process.argv[2]!, new Uint8Array(64 * 2 ** 20).fill(120));
