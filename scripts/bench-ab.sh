#!/usr/bin/env bash
# Figure 1 on two host binaries, interleaved (A B A B ...), for a change
# whose cost must stay within noise: prints each round's default-policy rate
# for A and B and their ratio B/A, then the median ratio.
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
# Build the bench first: cargo build --release -p execd-bench
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?old binary}; b=${2:?new binary}; rounds=${3:-10}
bench=target/release/execd-bench
rate() {
    "$bench" --only 1 --runs 1 --wait-idle 0 --host "$1" 2>/dev/null |
        sed -n 's/^| 1 | .*| [0-9.]* (\([0-9,]*\) events\/s) |.*/\1/p' | tr -d ,
}
ratios=()
printf '| round | A events/s | B events/s | B/A |\n|---|---|---|---|\n'
for ((i = 1; i <= rounds; i++)); do
    ra=$(rate "$a"); rb=$(rate "$b")
    r=$(awk -v a="$ra" -v b="$rb" 'BEGIN { printf "%.3f", b / a }')
    ratios+=("$r")
    printf '| %d | %s | %s | %s |\n' "$i" "$ra" "$rb" "$r"
done
printf '%s\n' "${ratios[@]}" | sort -n |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median B/A over %d rounds: %.3f (min %s, max %s)\n", NR, m, v[1], v[NR] }'
