#!/usr/bin/env bash
# A/B of two (or more) lifeline builds under the same WebRTC load, interleaved (the machine is
# shared: alternating in the same minutes is what makes the figures comparable).
#
#   bench/media/webrtc-ab.sh OLD_BINARY NEW_BINARY [...]      # ROUNDS=2 STEPS="100 200"
#
# Each round runs `webrtc.sh` once per binary (the order flips every round), all with the same
# load generator (LOAD, default this tree's release `webrtc-load`). Prints every run's line,
# tagged with the binary's position (A, B, ...), and the CPU per 100 calls per binary and step.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ROUNDS="${ROUNDS:-2}"
export STEPS="${STEPS:-100 200}"
export LOAD="${LOAD:-$ROOT/target/release/examples/webrtc-load}"
WORK="${WORK:-/tmp/lifeline-webrtc-ab}"
mkdir -p "$WORK"
bins=("$@")
(( ${#bins[@]} >= 2 )) || { echo "usage: $0 BINARY_A BINARY_B [...]" >&2; exit 64; }
tags=(A B C D E F)
out="$WORK/runs.txt"
: > "$out"
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${!bins[@]}")
  if (( r % 2 == 0 )); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
  for i in "${order[@]}"; do
    LL="${bins[$i]}" WORK="$WORK/${tags[$i]}" "$HERE/webrtc.sh" | tail -n +2 |
      while read -r line; do
        printf '%s r%s %s %s\n' "${tags[$i]}" "$r" "$(date -u +%H:%M:%S)" "$line" | tee -a "$out"
      done
  done
done
echo "per 100 calls (%core), mean over rounds:"
for i in "${!bins[@]}"; do
  for n in $STEPS; do
    awk -v t="${tags[$i]}" -v n="$n" '$1 == t && $4 == n {s += $10; k++; v = v " " $10}
      END {if (k) printf "  %s %-60s calls=%-5s %6.2f  (runs:%s)\n", t, "", n, s / k, v}' "$out"
  done
  echo "  ${tags[$i]} = ${bins[$i]}"
done
