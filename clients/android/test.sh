#!/bin/sh
# Builds clients/android with the machine's JDK at the Java 8 language level
# and runs its JUnit 4 tests. No build tool is downloaded: the jars come from
# Debian (junit4, libhamcrest-java, libokhttp-java, libokio-java) in
# $RAMPART_JAVA_LIBS (default /usr/share/java).
#   RAMPART_VECTORS  the vectors directory (default ../testdata/vectors)
#   RAMPART_HARNESS  the harness configuration (HarnessTest skips without it)
set -eu
cd "$(dirname "$0")"
libs="${RAMPART_JAVA_LIBS:-/usr/share/java}"
for j in okhttp okio junit4 hamcrest-core; do
  [ -f "$libs/$j.jar" ] || { echo "test.sh: $libs/$j.jar is missing (apt-get install junit4 libhamcrest-java libokhttp-java libokio-java)" >&2; exit 2; }
done
out="${TMPDIR:-/tmp}/rampart-android-build.$$"
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/main" "$out/test"
deps="$libs/okhttp.jar:$libs/okio.jar"
javac --release 8 -Xlint:all -Werror -d "$out/main" -cp "$deps" $(find src/main/java -name '*.java')
javac --release 8 -Xlint:all,-options -d "$out/test" -cp "$out/main:$deps:$libs/junit4.jar" $(find src/test/java -name '*.java')
classes=$(cd src/test/java && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
if [ "${1:-}" = "--bench" ]; then
  exec java -cp "$out/main:$out/test:$deps:$libs/junit4.jar" io.github.rampartsec.pin.Bench
fi
# shellcheck disable=SC2086
java -cp "$out/main:$out/test:$deps:$libs/junit4.jar:$libs/hamcrest-core.jar" org.junit.runner.JUnitCore $classes
