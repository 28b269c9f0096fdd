#!/usr/bin/env bash
# Start / stop lifeline for the SIPp benchmarks (the counterpart of kamailio-ctl.sh).
#
#   lifeline-ctl.sh start    # builds the release binary if needed, writes $KB/lifeline/lifeline.toml,
#                            # runs it in the background (PID in $KB/lifeline.pid, log in $KB/lifeline.log)
#   lifeline-ctl.sh stop     # stops exactly that PID
#   lifeline-ctl.sh pids     # the PID (for CPU accounting)
#
# It listens on udp/tcp 127.0.0.1:${LL_PORT:-5080}; the bench dialplan sends every call
# (sip:service@...) to the SIPp UAS on 127.0.0.1:5090 and trusts 127.0.0.2, where compare.sh
# runs the SIPp UAC (UAC_IP): no challenge for calls, like kamailio.cfg. Agents for the REGISTER-with-auth test come from $KB/regauth
# (tools/gen_users.py), with realm 127.0.0.1 as kamailio-auth.cfg uses.
# LL_EXTRA_TOML: a file appended to the configuration (../media/run.sh adds its [media] section).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
KB="${KB:-/tmp/kbench}"
PORT="${LL_PORT:-5080}"
ADMIN_PORT="${LL_ADMIN_PORT:-18088}"
DIR="$KB/lifeline"
PIDF="$KB/lifeline.pid"
BIN="${LL_BIN:-$ROOT/target/release/lifeline}"
mkdir -p "$DIR/dialplans" "$DIR/data"

running() { [[ -f "$PIDF" ]] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "lifeline already running, pid $(cat "$PIDF")"; exit 0; fi
    if [[ -z "${LL_BIN:-}" ]]; then (cd "$ROOT" && cargo build --release --quiet); fi
    cat > "$DIR/lifeline.toml" <<TOML
[node]
name = "bench"
data_dir = "$DIR/data"
[sip]
domain = "127.0.0.1"
listen = ["udp:127.0.0.1:$PORT", "tcp:127.0.0.1:$PORT"]
[web]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[dialplan]
dir = "$DIR/dialplans"
[agents]
seed = "$DIR/agents.toml"
[limits]
# SIPp sends everything from one address; Kamailio's bench config has no rate limit either.
per_source_rps = 1000000
TOML
    if [[ -n "${LL_EXTRA_TOML:-}" ]]; then cat "$LL_EXTRA_TOML" >> "$DIR/lifeline.toml"; fi
    cat > "$DIR/dialplans/bench.toml" <<TOML
[[trunk]]
name = "sipp-uas"
kind = "direct-offer"
uri = "sip:127.0.0.1:5090;transport=udp"
probe = false          # SIPp's UAS scenario would count an OPTIONS as a failed call

[[route]]
pattern = '.*'
trunks = ["sipp-uas"]

[[trusted]]
cidr = "127.0.0.2/32"
TOML
    # Agents: the subscribers of the REGISTER-with-auth test, when generated.
    python3 - "$KB/regauth/users.csv" "$DIR/agents.toml" <<'PY'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
out = []
try:
    for line in open(src):
        m = re.match(r"(\S+?);\[authentication username=\S+ password=(\S+)\];", line)
        if m:
            out.append(f'[[agent]]\nid = "{m.group(1)}"\npassword = "{m.group(2)}"\n')
except FileNotFoundError:
    pass
open(dst, "w").write("\n".join(out))
PY
    # Extra dialplan file and agents (emergency.sh adds an emergency carrier and an agent).
    if [[ -n "${LL_EXTRA_PLAN:-}" ]]; then cp "$LL_EXTRA_PLAN" "$DIR/dialplans/00-extra.toml"; else rm -f "$DIR/dialplans/00-extra.toml"; fi
    if [[ -n "${LL_EXTRA_AGENTS:-}" ]]; then cat "$LL_EXTRA_AGENTS" >> "$DIR/agents.toml"; fi
    RUST_LOG="${RUST_LOG:-warn}" nohup "$BIN" run --config "$DIR/lifeline.toml" >"$KB/lifeline.log" 2>&1 &
    echo $! > "$PIDF"
    # Ready (GET /ready) once the agents are imported and every listener serves: the SIP port
    # is bound earlier, and SIPp must not start before.
    for _ in $(seq 1 600); do
      python3 - "$ADMIN_PORT" <<'PY' && break
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=1)
except Exception:
    sys.exit(1)
PY
      running || { tail -20 "$KB/lifeline.log"; exit 1; }
      sleep 0.2
    done
    echo "lifeline running, pid $(cat "$PIDF"), udp/tcp 127.0.0.1:$PORT"
    ;;
  stop)
    if running; then
      pid=$(cat "$PIDF"); kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDF"
    ;;
  pids) running && cat "$PIDF" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
