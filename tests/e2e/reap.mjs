// Children still running when a test file ends (a failed assertion or hook skipped their
// stop) are killed, so a failure never leaves the test process waiting on a child forever:
// the child's pipes would keep node's event loop alive, and the run would hang until CI's
// timeout. A module of its own: after() registers a hook, so only test files may import it.
import { after } from 'node:test';

const live = new Set();
after(() => {
  for (const p of live) p.kill('SIGKILL');
});

// Returns proc, killed at the end of the test file if it is still running then.
export function killAtEnd(proc) {
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  return proc;
}
