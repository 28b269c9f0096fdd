#!/usr/bin/env bash
# Emergency calls under load (issue 6 §7, "Speed"): lifeline (release build, lifeline-ctl.sh)
# with an emergency carrier (SIPp UAS on 127.0.0.1:5092) and a trusted agent on 127.0.0.3;
# ordinary calls from 127.0.0.2 at each background rate, 911 calls at 2/s beside them.
#
#   emergency.sh                       # LOADS="0,3000,12000" SECS=20 EM_RATE=2
#
# Output: a Markdown table (and the SIPp files under $OUT). Exit status 1 if an emergency call
# failed at any load.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KB="${KB:-/tmp/kbench}"
OUT="${OUT:-$KB/runs/emergency-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
cat > "$OUT/emergency-plan.toml" <<'TOML'
[[trunk]]
name = "psap-carrier"
kind = "direct-offer"
uri = "sip:127.0.0.1:5092;transport=udp"
numbers = ["+15550199000-+15550199999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[trusted]]
cidr = "127.0.0.3/32"

[emergency]
callback_pool = ["+15550199000-+15550199099"]
site_number = "+15550199999"
callback_fallback = "+15550199998"
failover_after = "2s"
TOML
cat > "$OUT/emergency-agents.toml" <<'TOML'

[[agent]]
id = "sipp"
password = "bench-only"
caller_id = ["+15550199500"]
location = { country = "US", address = "1 Main St, Springfield, IL 62701" }
TOML
cleanup() { "$HERE/lifeline-ctl.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
LL_EXTRA_PLAN="$OUT/emergency-plan.toml" LL_EXTRA_AGENTS="$OUT/emergency-agents.toml" "$HERE/lifeline-ctl.sh" start
python3 "$HERE/tools/emergency_load.py" --loads "${LOADS:-0,3000,12000}" --secs "${SECS:-20}" \
  --em-rate "${EM_RATE:-2}" --out "$OUT" | tee "$OUT/summary.md"
