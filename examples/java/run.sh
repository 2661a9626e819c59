#!/usr/bin/env bash
# Runs the Java publisher built by build.sh; arguments go to OrderPublisher:
#   examples/java/run.sh --target localhost:9090 --topic orders.eu --count 3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=classpath.sh
. "$here/classpath.sh"
build="${BUILD_DIR:-$here/build}"
[ -d "$build/classes" ] || { echo "run.sh: not built; run examples/java/build.sh first" >&2; exit 1; }
exec java -cp "$build/classes:$CLASSPATH_JARS" com.heraldhq.examples.OrderPublisher "$@"
