// A node:test reporter that writes one JSON line per finished test:
// {"name", "status": "pass"|"fail"|"skip"|"todo", "error", "durationMs"}.
// The Go side (e2e/harness_test.go, runNode) reads it.
export default async function* reporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const d = event.data;
    if (d.details?.type === 'suite') continue;
    let status = event.type === 'test:pass' ? 'pass' : 'fail';
    if (d.skip) status = 'skip';
    if (d.todo) status = 'todo';
    const err = d.details?.error;
    yield JSON.stringify({
      name: d.name,
      status,
      error: err ? describe(err) : '',
      durationMs: d.details?.duration_ms ?? 0,
    }) + '\n';
  }
}

function describe(err) {
  const cause = err.cause ?? err;
  const text = cause?.stack ?? String(cause);
  return text.length > 4000 ? text.slice(0, 4000) + ' …' : text;
}
