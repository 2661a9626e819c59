# Sourced by build.sh and run.sh: the Debian-packaged jars the publisher
# needs (packages libgrpc-java, libnetty-java, libprotobuf-java, libguava-java, libperfmark-java).
# JAVA_JARS overrides the directory. Sets CLASSPATH_JARS, or lists what is
# missing and returns 1.
jars_dir="${JAVA_JARS:-/usr/share/java}"
jar_names=(
  grpc-api grpc-context grpc-core grpc-netty grpc-stub grpc-protobuf grpc-protobuf-lite
  protobuf guava perfmark-api
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common
)
CLASSPATH_JARS=""
missing=()
for name in "${jar_names[@]}"; do
  if [ -f "$jars_dir/$name.jar" ]; then
    CLASSPATH_JARS="${CLASSPATH_JARS:+$CLASSPATH_JARS:}$jars_dir/$name.jar"
  else
    missing+=("$name.jar")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "jars not in $jars_dir: ${missing[*]}" >&2
  echo "install: apt-get install libgrpc-java libnetty-java libprotobuf-java libguava-java libperfmark-java" >&2
  return 1
fi
