#!/usr/bin/env bash
# lifeline vs Kamailio with the same SIPp scenarios, in one session (DESIGN: compare only
# within one run).
#
#   compare.sh cps        # INVITE..BYE through a record-routing proxy, stepped rates
#   compare.sh regauth    # REGISTER with digest auth (401 + answer), 10,000 subscribers
#
# Kamailio (kamailio-ctl.sh, tlsf allocator) listens on 127.0.0.1:5070, lifeline
# (lifeline-ctl.sh, release build) on 127.0.0.1:5080. Results: $OUT/{kamailio,lifeline}/ and a
# side-by-side table on stdout. Every run-bench.sh knob applies (RATES, STEP_SECS, ...).
# Needs: apt-get install sip-tester kamailio; python3; cc.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KB="${KB:-/tmp/kbench}"
TEST="${1:-cps}"
OUT="${OUT:-$KB/runs/compare-$TEST-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
cleanup() { "$HERE/kamailio-ctl.sh" stop >/dev/null 2>&1 || true; "$HERE/lifeline-ctl.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

case "$TEST" in
  cps) kam_cfg="$HERE/kamailio/kamailio.cfg"; tests=(cps confirm) ;;
  regauth)
    kam_cfg="$HERE/kamailio/kamailio-auth.cfg"; tests=(regauth)
    python3 "$HERE/tools/gen_users.py" --n "${USERS:-10000}" --out "$KB/regauth" >/dev/null
    export AUTH_USERS="$KB/regauth/users.csv" REG_USERS="${USERS:-10000}" CONFIRM="${CONFIRM:-0}"
    ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac

echo "## Kamailio"
KAM_CFG="$kam_cfg" "$HERE/kamailio-ctl.sh" start
OUT="$OUT/kamailio" "$HERE/run-bench.sh" 127.0.0.1:5070 "${tests[@]}"
"$HERE/kamailio-ctl.sh" stop

echo "## lifeline"
"$HERE/lifeline-ctl.sh" start
UAC_IP=127.0.0.2 OUT="$OUT/lifeline" PROXY_PIDS="$("$HERE/lifeline-ctl.sh" pids)" "$HERE/run-bench.sh" 127.0.0.1:5080 "${tests[@]}"
"$HERE/lifeline-ctl.sh" stop

python3 "$HERE/tools/step_summary.py" "$OUT"/*/results.csv | tee "$OUT/summary.md"
