#!/usr/bin/env bash
# Run by `make test` before `go test`: warns loudly when a real client that
# the e2e tests drive is missing, since `go test` hides the tests' own skip
# messages. Under HERALD_REQUIRE_BROWSER=1 (CI) those tests fail instead.
missing=()
command -v node >/dev/null || missing+=("node (Node.js 20 or newer)")
command -v npm >/dev/null || missing+=("npm")
chrome=${CHROME_PATH:-/usr/bin/chromium}
[ -x "$chrome" ] || missing+=("Chromium at $chrome (apt-get install chromium, or set CHROME_PATH)")
if ((${#missing[@]})); then
  {
    echo "!!! ======================================================================"
    echo "!!! Real-client tests (e2e/) will be SKIPPED: missing"
    for m in "${missing[@]}"; do echo "!!!   - $m"; done
    echo "!!! CI installs them and runs these tests with HERALD_REQUIRE_BROWSER=1."
    echo "!!! ======================================================================"
  } >&2
fi
exit 0
