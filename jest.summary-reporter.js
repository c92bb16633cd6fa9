// Prints one plain closing line (`jest: N passed, N failed`) after Jest's own summary, the form CI
// tools read when they do not parse Jest's output, preceded by one line per skipped test: their
// names say why they were skipped (test/support/skip.ts), which Jest's summary alone never shows.
export default class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skippedTests = results.testResults.flatMap((file) =>
      file.testResults.filter((test) => test.status === 'pending' || test.status === 'todo').map((test) => test.fullName),
    );
    // `-t` filters mark every other test pending too: list the skips only when the run skipped few.
    if (skippedTests.length > 0 && skippedTests.length <= 20) {
      process.stdout.write(skippedTests.map((name) => `skipped: ${name}\n`).join(''));
    }
    const skipped = results.numPendingTests + results.numTodoTests;
    process.stdout.write(`jest: ${results.numPassedTests} passed, ${results.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  }
}
