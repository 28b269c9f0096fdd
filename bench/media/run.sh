#!/usr/bin/env bash
# Media relay benchmark, lifeline beside rtpengine (issue 7): starts both relays, runs the same SIPp
# media load (N concurrent calls of 20 ms PCMU, echoed by the callee) against each, alternating at
# every step, stops everything, prints the side-by-side table. See README.md next to this file.
#
#   bench/media/run.sh
#
# Knobs (env): STEPS="100 400 800 1200"  REPEATS=2  RATE=200 (calls/s while ramping)  WINDOW=20
#   (measured seconds, all calls up)  SETTLE=4  STOP_AFTER=1  QUIET_WAIT=60  QUIET_MAX=15 (wait up to
#   QUIET_WAIT s before each run until other processes use < QUIET_MAX % of a core, then run anyway)
#   RELAYS="rtpengine lifeline" (order of repeat 1; it flips at every repeat)
#   MB=/tmp/mediabench (work dir)  OUT=$MB/runs/<time>  UAS_RCVBUF=1 (the kit's 4 MiB receive
#   buffer for the SIPp UAS echo socket, tools/rcvbuf.c; 0 = off)  LL_BIN (a lifeline binary; default:
#   cargo build --release of this checkout)  LL_RTP_PORTS="20000-29999"
#   CAPTURE=0 (seconds of tcpdump in each window for the relay's delay and jitter, tools/transit.py;
#   it costs CPU: run it as a separate series, e.g. CAPTURE=10 STEPS="400 1200" REPEATS=1)
# Needs: apt-get install sip-tester kamailio rtpengine-daemon rtpengine-utils; python3; cc.
#
# Adapted from ../shared/bench/rtpengine/run-media.sh (the rtpengine reference kit).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MB="${MB:-/tmp/mediabench}"
export RB="$MB" KB="$MB"         # rtpengine-ctl.sh, kamailio-ctl.sh and lifeline-ctl.sh work dirs
OUT="${OUT:-$MB/runs/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

for p in 5061 5070 5080 5090 16000 22222; do
  if ss -Hlun "sport = :$p" | grep -q .; then echo "UDP port $p is busy:"; ss -Hlunp "sport = :$p"; exit 1; fi
done

args=(--out "$OUT" --steps "${STEPS:-100 400 800 1200}" --repeats "${REPEATS:-2}" --rate "${RATE:-200}"
      --window "${WINDOW:-20}" --settle "${SETTLE:-4}" --stop-after "${STOP_AFTER:-1}"
      --quiet-wait "${QUIET_WAIT:-60}" --quiet-max "${QUIET_MAX:-15}" --relays "${RELAYS:-rtpengine lifeline}"
      --capture "${CAPTURE:-0}")
if [[ "${UAS_RCVBUF:-1}" != 0 ]]; then
  [[ -f "$MB/rcvbuf.so" && "$MB/rcvbuf.so" -nt "$HERE/tools/rcvbuf.c" ]] \
    || cc -O2 -shared -fPIC -o "$MB/rcvbuf.so" "$HERE/tools/rcvbuf.c" -ldl
  args+=(--uas-rcvbuf "$MB/rcvbuf.so")
fi

cleanup() {
  "$HERE/../sipp/lifeline-ctl.sh" stop >/dev/null 2>&1 || true
  "$HERE/rtpengine-ctl.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

RELAYS="${RELAYS:-rtpengine lifeline}"
# rtpengine (userspace, ports 30000-59999) + Kamailio on 127.0.0.1:5070, exactly as the kit starts them
if [[ " $RELAYS " == *" rtpengine "* ]]; then
  "$HERE/rtpengine-ctl.sh" start
  args+=(--rtpengine-pid "$("$HERE/rtpengine-ctl.sh" pid)" --kamailio-pids "$("$HERE/../sipp/kamailio-ctl.sh" pids | paste -sd, -)")
fi

# lifeline on 127.0.0.1:5080 with the SIPp bench dialplan (service -> SIPp UAS 127.0.0.1:5090,
# the UAC's 127.0.0.2 trusted), anchoring every call's media on ports that rtpengine does not use
if [[ " $RELAYS " == *" lifeline "* ]]; then
cat > "$MB/lifeline-media.toml" <<TOML
[media]
anchor = "always"
rtp_ports = "${LL_RTP_PORTS:-20000-29999}"
webrtc_port = 0
TOML
LL_EXTRA_TOML="$MB/lifeline-media.toml" LL_PORT=5080 LL_ADMIN_PORT=18088 "$HERE/../sipp/lifeline-ctl.sh" start
args+=(--lifeline-pid "$("$HERE/../sipp/lifeline-ctl.sh" pids)" --lifeline-target 127.0.0.1:5080
       --lifeline-admin 127.0.0.1:18088 --lifeline-uac-ip 127.0.0.2)
fi

{ date -u; uname -r; nproc; rtpengine --version 2>&1 | head -1; kamailio -v 2>&1 | head -1; sipp -v 2>&1 | grep -m1 SIPp
  git -C "$HERE/../.." rev-parse --short HEAD; } > "$OUT/versions.txt" 2>&1 || true

python3 "$HERE/media_bench.py" "${args[@]}"
cp "$MB/lifeline.log" "$OUT/lifeline.log" 2>/dev/null || true
cp "$MB/rtpengine.log" "$OUT/rtpengine.log" 2>/dev/null || true
python3 "$HERE/tools/media_summary.py" "$OUT/results.csv" | tee "$OUT/summary.md"
