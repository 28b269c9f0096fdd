#!/usr/bin/env bash
# WebRTC (DTLS-SRTP) <-> plain RTP through lifeline's media anchor, at N concurrent calls.
#
#   bench/media/webrtc.sh                 # STEPS="100 200 400" by default
#   STEPS="50 100" HOLD=40 bench/media/webrtc.sh
#
# The browsers are `webrtc-load` (bench/media/webrtc_load.rs: str0m peers doing what Chromium
# does: ICE, DTLS 1.2, SRTP, 20 ms PCMU), calling from 127.0.0.2 (trusted: no challenge)
# through lifeline on 127.0.0.1:$LL_PORT to a SIPp UAS on 127.0.0.1:$UAS_PORT that echoes
# every RTP packet (-rtp_echo). The edge relays each call's audio both ways: SRTP in from the
# browser, plain RTP to SIPp, plain RTP back, SRTP out: 100 packets/s per call through the
# anchor, like rtpengine's plain-RTP bench (../shared/bench/RTPENGINE.md).
#
# Per step: calls start at RATE/s; once all are up and SETTLE seconds have passed, the
# lifeline process's CPU (utime+stime, /proc/PID/stat) is measured over WINDOW seconds, with
# its media counters (/metrics) before and after. Loss is what webrtc-load sent and did not
# get back (in-flight packets at hang-up included: a few per call). The load generator does
# the same DTLS-SRTP work as the edge, on the same 2 cores: its CPU is printed too.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STEPS="${STEPS:-100 200 400}"
RATE="${RATE:-50}"
SETTLE="${SETTLE:-4}"
WINDOW="${WINDOW:-20}"
LL_PORT="${LL_PORT:-5180}"
ADMIN_PORT="${ADMIN_PORT:-18188}"
UAS_PORT="${UAS_PORT:-5190}"
UAS_MEDIA="${UAS_MEDIA:-46000}"
WORK="${WORK:-/tmp/lifeline-webrtc-bench}"
TICKS=$(getconf CLK_TCK)

# LL and LOAD name other binaries (an A/B of two builds under the same load); else this tree's
# release build.
if [[ -z "${LL:-}" || -z "${LOAD:-}" ]]; then
  (cd "$ROOT" && cargo build --release --quiet --bin lifeline --example webrtc-load)
fi
LL="${LL:-$ROOT/target/release/lifeline}"
LOAD="${LOAD:-$ROOT/target/release/examples/webrtc-load}"
# PERF=1: `perf record -g` of the edge over the window, into $WORK/perf-N.data (other values:
# perf record's call-graph options, e.g. PERF="--call-graph dwarf").
PERF="${PERF:-}"

rm -rf "$WORK/dialplans" "$WORK/data" && mkdir -p "$WORK/dialplans" "$WORK/data"
cat > "$WORK/lifeline.toml" <<TOML
[node]
name = "webrtc-bench"
data_dir = "$WORK/data"
[sip]
domain = "127.0.0.1"
listen = ["udp:127.0.0.1:$LL_PORT"]
[web]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[media]
webrtc_port = 0
rtp_ports = "40000-44999"
[dialplan]
dir = "$WORK/dialplans"
[limits]
per_source_rps = 1000000
TOML
cat > "$WORK/dialplans/bench.toml" <<TOML
[[trunk]]
name = "echo"
kind = "direct-offer"
uri = "sip:127.0.0.1:$UAS_PORT;transport=udp"
probe = false

[[route]]
pattern = '.*'
trunks = ["echo"]

[[trusted]]
cidr = "127.0.0.2/32"
TOML

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# UDP datagrams the whole machine dropped for a full receive buffer (RcvbufErrors): loss that
# did not happen in the edge's own counters shows up here (or with another job on the box).
rcvbuf_errors() { awk '/^Udp:/ {n++} /^Udp:/ && n == 2 {print $6}' /proc/net/snmp; }
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

cleanup() {
  [[ -n "${LLPID:-}" ]] && kill "$LLPID" 2>/dev/null || true
  [[ -n "${UASPID:-}" ]] && kill "$UASPID" 2>/dev/null || true
  [[ -n "${LOADPID:-}" ]] && kill "$LOADPID" 2>/dev/null || true
}
trap cleanup EXIT

printf '%-6s %-6s %-9s %-10s %-9s %-12s %-14s %-10s %-8s\n' calls up connected relayed/s loss% "lifeline%cpu" "per 100 calls" "load%cpu" "rcvbuf-drops"
for N in $STEPS; do
  k0=$(rcvbuf_errors)
  RUST_LOG=warn "$LL" run --config "$WORK/lifeline.toml" > "$WORK/lifeline-$N.log" 2>&1 &
  LLPID=$!
  sipp -sf "$ROOT/tests/sipp/rtp_trunk_uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -mp "$UAS_MEDIA" \
    -rtp_echo -nostdin -m "$N" -timeout 600 > "$WORK/uas-$N.log" 2>&1 &
  UASPID=$!
  sleep 1
  UP_SECS=$(( (N + RATE - 1) / RATE ))
  HOLD=$(( UP_SECS + SETTLE + WINDOW + 4 ))
  "$LOAD" --edge "127.0.0.1:$LL_PORT" --from 127.0.0.2 --calls "$N" --rate "$RATE" --hold "$HOLD" \
    --to service > "$WORK/load-$N.log" 2>&1 &
  LOADPID=$!
  sleep $(( UP_SECS + SETTLE ))
  c0=$(cpu "$LLPID"); l0=$(cpu "$LOADPID")
  p0=$(( $(metric 'lifeline_media_packets_total{dir="to_plain"}') + $(metric 'lifeline_media_packets_total{dir="to_browser"}') ))
  if [[ -n "$PERF" ]]; then
    perf_args="-g"; [[ "$PERF" != 1 ]] && perf_args="$PERF"
    # shellcheck disable=SC2086
    perf record $perf_args -o "$WORK/perf-$N.data" -p "$LLPID" -- sleep "$WINDOW" > "$WORK/perf-$N.log" 2>&1
  else
    sleep "$WINDOW"
  fi
  c1=$(cpu "$LLPID"); l1=$(cpu "$LOADPID")
  p1=$(( $(metric 'lifeline_media_packets_total{dir="to_plain"}') + $(metric 'lifeline_media_packets_total{dir="to_browser"}') ))
  wait "$LOADPID" || true
  LOADPID=
  result=$(grep '^result' "$WORK/load-$N.log" || echo "result up=0 connected=0 loss=100%")
  up=$(sed -E 's/.* up=([0-9]+).*/\1/' <<<"$result")
  connected=$(sed -E 's/.* connected=([0-9]+).*/\1/' <<<"$result")
  loss=$(sed -E 's/.* loss=([0-9.]+)%.*/\1/' <<<"$result")
  pct=$(awk -v a="$c0" -v b="$c1" -v t="$TICKS" -v w="$WINDOW" 'BEGIN {printf "%.1f", 100 * (b - a) / t / w}')
  per100=$(awk -v p="$pct" -v n="$N" 'BEGIN {printf "%.2f", 100 * p / n}')
  loadpct=$(awk -v a="$l0" -v b="$l1" -v t="$TICKS" -v w="$WINDOW" 'BEGIN {printf "%.1f", 100 * (b - a) / t / w}')
  pps=$(( (p1 - p0) / WINDOW ))
  kdrops=$(( $(rcvbuf_errors) - k0 ))
  printf '%-6s %-6s %-9s %-10s %-9s %-12s %-14s %-10s %-8s\n' "$N" "$up" "$connected" "$pps" "$loss" "$pct" "$per100" "$loadpct" "$kdrops"
  kill "$UASPID" 2>/dev/null || true; UASPID=
  kill "$LLPID" 2>/dev/null || true; wait "$LLPID" 2>/dev/null || true; LLPID=
  sleep 2
done
