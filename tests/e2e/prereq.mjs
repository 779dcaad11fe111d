// What a test needs and may not find (the kiln binary, ../shared data): without it the test
// is skipped with the reason, except when CI is set (.ci/run): then the file fails, so a CI
// run that could not test something does not pass.
export function needs(ok, reason) {
  if (ok) return false;
  if (process.env.CI) throw new Error(`missing prerequisite, and CI is set (a failure, not a skip): ${reason}`);
  return reason;
}
