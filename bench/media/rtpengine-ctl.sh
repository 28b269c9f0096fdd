#!/usr/bin/env bash
# Start / stop the media-anchor reference: rtpengine (userspace only) + Kamailio with the rtpengine module.
# From ../shared/bench/rtpengine/rtpengine-ctl.sh (the rtpengine reference kit, RTPENGINE.md); changed
# only in paths (Kamailio is started by ../sipp/kamailio-ctl.sh, the same kit's) and the work dir.
#
#   rtpengine-ctl.sh start [srtp]   # rtpengine, then ../sipp/kamailio-ctl.sh with kamailio-rtpengine.cfg
#                                   # (srtp: -A WITH_SRTP, the callee leg becomes RTP/SAVP + SDES)
#   rtpengine-ctl.sh stop           # Kamailio, then rtpengine, each by its recorded PID
#   rtpengine-ctl.sh status | pid   # rtpengine totals via the CLI | rtpengine PID
#
# rtpengine runs in the foreground (-f) as a child of this script's nohup, no kernel forwarding
# (--table=-1), control ng on udp 127.0.0.1:22222, CLI on tcp 127.0.0.1:9900, media on 127.0.0.1
# ports RTPE_PORT_MIN..RTPE_PORT_MAX, --delete-delay=0 (ports freed at BYE).
# Env: RB (work dir, default /tmp/mediabench), RTPE_THREADS (--num-threads; default: rtpengine's own
#      default = number of CPUs), RTPE_LOG_LEVEL (default 5 = notice), RTPE_PORT_MIN/MAX (30000/59999),
#      plus kamailio-ctl.sh's (KB, KAM_MEMMGR, ...).
# Needs: apt-get install rtpengine-daemon kamailio (packaged services stay off).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RB="${RB:-/tmp/mediabench}"
PIDF="$RB/rtpengine.pid"
mkdir -p "$RB"
running() { [[ -f "$PIDF" ]] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

case "${1:-}" in
  start)
    mode="${2:-plain}"
    if running; then echo "rtpengine already running, pid $(cat "$PIDF")"; else
      command -v rtpengine >/dev/null || { echo "rtpengine not installed (apt-get install rtpengine-daemon)"; exit 1; }
      for p in 22222 9900; do
        if ss -Hlun "sport = :$p" | grep -q . || ss -Hltn "sport = :$p" | grep -q .; then echo "port $p busy"; exit 1; fi
      done
      thr=()
      [[ -n "${RTPE_THREADS:-}" ]] && thr=(--num-threads="$RTPE_THREADS")
      nohup rtpengine --config-file=none --foreground --table=-1 --interface=127.0.0.1 \
          --listen-ng=127.0.0.1:22222 --listen-cli=127.0.0.1:9900 \
          --port-min="${RTPE_PORT_MIN:-30000}" --port-max="${RTPE_PORT_MAX:-59999}" \
          --delete-delay=0 --timeout=60 --log-level="${RTPE_LOG_LEVEL:-5}" --log-stderr "${thr[@]}" \
          >"$RB/rtpengine.log" 2>&1 </dev/null &
      echo $! >"$PIDF"
      for _ in $(seq 1 50); do
        python3 "$HERE/tools/rtpe_ng.py" ping >/dev/null 2>&1 && break
        sleep 0.1
      done
      running || { echo "rtpengine failed to start:"; tail -20 "$RB/rtpengine.log"; exit 1; }
      echo "rtpengine started, pid $(cat "$PIDF"), $(ls /proc/"$(cat "$PIDF")"/task | wc -l) threads, log $RB/rtpengine.log"
    fi
    args=""
    [[ "$mode" == srtp ]] && args="-A WITH_SRTP"
    KAM_CFG="$HERE/kamailio-rtpengine.cfg" KAM_ARGS="$args ${KAM_ARGS:-}" "$HERE/../sipp/kamailio-ctl.sh" start
    ;;
  stop)
    "$HERE/../sipp/kamailio-ctl.sh" stop || true
    if running; then
      pid=$(cat "$PIDF"); kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "rtpengine (pid $pid) stopped"
    else echo "rtpengine not running"; fi
    rm -f "$PIDF"
    ;;
  status)
    running || { echo "rtpengine not running"; exit 1; }
    python3 "$HERE/tools/rtpe_ng.py" cli "list totals" | sed -n '1,20p'
    ;;
  pid)
    running && cat "$PIDF"
    ;;
  *) echo "usage: $0 start [srtp] | stop | status | pid"; exit 2;;
esac
