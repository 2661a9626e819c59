// Package e2e holds Herald's real-client test suite: headless Chromium
// (driven by playwright-core), the npm eventsource client, the npm
// eventsource-parser parser and the Go go-sse client, each against real
// Herald servers. The tests are in the _test.go files and *.test.mjs; `go
// test ./e2e/` (part of `make test`) runs them all. See docs/sse-checklist.md
// for what each test covers.
package e2e
