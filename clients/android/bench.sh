#!/bin/sh
# The Android/JVM client's benchmarks on the machine's JVM, in Go's
# benchmark format: ./bench.sh | tee new.txt; benchstat new.txt
exec sh "$(dirname "$0")/test.sh" --bench
