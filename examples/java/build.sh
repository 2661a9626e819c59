#!/usr/bin/env bash
# Builds the Java publisher without Maven, with Debian's packaged toolchain:
# protoc and grpc_java_plugin generate Java from proto/ (herald/v1 and
# orders/v1; the well-known types come from /usr/include), and javac
# compiles it against the jars in /usr/share/java.
#
#   apt-get install default-jdk-headless protobuf-compiler libprotobuf-dev \
#     protobuf-compiler-grpc-java-plugin libgrpc-java libnetty-java libprotobuf-java libguava-java \
#     libperfmark-java
#   examples/java/build.sh && examples/java/run.sh --count 3
#
# Output: examples/java/build/classes (BUILD_DIR overrides examples/java/build).
# PROTOC, GRPC_JAVA_PLUGIN,
# PROTOC_INCLUDE and JAVA_JARS override where the tools are.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$here/build}"
protoc="${PROTOC:-protoc}"
plugin="${GRPC_JAVA_PLUGIN:-$(command -v grpc_java_plugin || command -v protoc-gen-grpc-java || true)}"
include="${PROTOC_INCLUDE:-/usr/include}"

for tool in "$protoc" javac; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found" >&2; exit 1; }
done
[ -n "$plugin" ] || { echo "build.sh: grpc_java_plugin not found (package protobuf-compiler-grpc-java-plugin)" >&2; exit 1; }
[ -f "$include/google/protobuf/any.proto" ] || { echo "build.sh: no well-known types in $include (package libprotobuf-dev)" >&2; exit 1; }
# shellcheck source=classpath.sh
. "$here/classpath.sh"

rm -rf "$build"
mkdir -p "$build/gen" "$build/classes"
"$protoc" -I "$root/proto" -I "$include" \
  --plugin=protoc-gen-grpc-java="$plugin" \
  --java_out="$build/gen" \
  --grpc-java_out="$build/gen" \
  "$root/proto/herald/v1/publisher.proto" "$root/proto/orders/v1/orders.proto"
# grpc_java_plugin before 1.54 marks its classes @javax.annotation.Generated,
# which Java 11+ no longer ships; the marker has no use at run time, so drop
# it, as newer plugins do by default.
find "$build/gen" -name '*Grpc.java' -exec sed -i '/^@javax\.annotation\.Generated(/,/)$/d' {} +
find "$build/gen" "$here/src/main/java" -name '*.java' > "$build/sources.txt"
javac -encoding UTF-8 -nowarn -d "$build/classes" -cp "$CLASSPATH_JARS" @"$build/sources.txt"
echo "built $build/classes"
