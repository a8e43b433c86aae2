#!/bin/bash
# bench/compare.sh REV [N]: the benchmarks issue 11 names (BenchmarkProxy,
# BenchmarkHandshake, BenchmarkMemory, BenchmarkAllowN, BenchmarkTokenIssuance),
# this tree against revision REV, interleaved: test binaries are built once
# per side, then N rounds (default 6) run each benchmark before, after, so
# that a change in the machine's load falls on both. benchstat compares.
# AllowN needs RAMPART_TEST_REDIS (default redis://127.0.0.1:6379/0).
# go install golang.org/x/perf/cmd/benchstat@latest
set -euo pipefail
rev=${1:?usage: bench/compare.sh REV [N]}
n=${2:-6}
root=$(git rev-parse --show-toplevel)
out=$(mktemp -d)
base="$out/base"
git -C "$root" worktree add -q --detach "$base" "$rev"
trap 'git -C "$root" worktree remove --force "$base"' EXIT
export RAMPART_TEST_REDIS=${RAMPART_TEST_REDIS:-redis://127.0.0.1:6379/0}
names=(gateway pin ratelimit redisstore token)
declare -A bench=([gateway]='^BenchmarkProxy$' [pin]='^BenchmarkHandshake$' [ratelimit]='^BenchmarkMemory$' [redisstore]='^BenchmarkAllowN$' [token]='^BenchmarkTokenIssuance$')
# The token server moved from token to token/authserver in issue 11.
pkg() { # side name
	local dir=$1 k=$2
	case $k in
	gateway) echo gateway ;; pin) echo pin ;; ratelimit) echo ratelimit ;; redisstore) echo ratelimit/redisstore ;;
	token) if [ -d "$dir/token/authserver" ]; then echo token/authserver; else echo token; fi ;;
	esac
}
for side in before after; do
	dir=$root; [ $side = before ] && dir=$base
	for k in "${names[@]}"; do
		(cd "$dir" && go test -c -o "$out/$side-$k.test" "./$(pkg "$dir" "$k")")
	done
done
for i in $(seq "$n"); do
	for k in "${names[@]}"; do
		for side in before after; do
			dir=$root; [ $side = before ] && dir=$base
			(cd "$dir/$(pkg "$dir" "$k")" && "$out/$side-$k.test" -test.run '^$' -test.bench "${bench[$k]}" -test.benchmem -test.count 1) |
				grep -E '^(Benchmark|goos|goarch|cpu)' >>"$out/$side.txt"
		done
	done
	echo "round $i of $n done" >&2
done
benchstat "$out/before.txt" "$out/after.txt"
echo "raw results: $out/before.txt $out/after.txt" >&2
