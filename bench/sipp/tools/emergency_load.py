#!/usr/bin/env python3
"""Emergency calls through lifeline while ordinary calls load it (issue 6 §7 and "Speed").

    emergency_load.py --loads 0,3000,12000 --secs 20 --em-rate 2 --out DIR

For each background rate: a SIPp UAC on 127.0.0.2 places ordinary calls (uac_rr.xml,
sip:service@) through the edge at 127.0.0.1:5080 to the SIPp UAS trunk on 127.0.0.1:5090; after a
warm-up, a second SIPp UAC on 127.0.0.3 (a [[trusted]] source, From user "sipp", an agent of the
edge) dials 911 at --em-rate calls/s, which the edge sends to the emergency carrier, a SIPp UAS
on 127.0.0.1:5092, with a callback lease written to the store before the INVITE leaves. The
table: ordinary calls placed/failed, emergency calls placed/completed/failed, and the emergency
INVITE -> 200 time (p50, p99, max) as SIPp measured it (-trace_rtt, rtd on the 200). The
agent's phone (registered from 127.0.0.4, a SIPp UAS) is called back by a "PSAP" SIPp UAC on
127.0.0.1 (a trunk's address) at the same rate: PSAP callback setup time, INVITE -> 200.

The edge must be started by lifeline-ctl.sh with the emergency dialplan and agent (emergency.sh
does that). Loopback only.
"""

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCEN = HERE.parent / "scenarios"
TESTS = HERE.parent.parent.parent / "tests" / "sipp"
EDGE = "127.0.0.1:5080"


def sipp(args, cwd, log):
    return subprocess.Popen(["sipp", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(cwd / log, "w"))


def finish(p, within):
    """Waits for a SIPp process; a SIPp stuck on calls the overloaded edge never finished is
    stopped after `within` seconds (its statistics are written as it goes)."""
    try:
        p.wait(timeout=within)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def last_stat(path, key):
    """The last value of `key` in a SIPp -trace_stat CSV (';'-separated)."""
    try:
        rows = list(csv.DictReader(open(path), delimiter=";"))
    except FileNotFoundError:
        return 0
    if not rows:
        return 0
    try:
        return int(float(rows[-1].get(key, "0") or 0))
    except ValueError:
        return 0


def rtts(d, pid):
    """The INVITE -> 200 times SIPp process `pid` wrote (files are named after scenario and pid)."""
    out = []
    for f in d.glob(f"*_{pid}_rtt.csv"):
        for line in open(f).read().splitlines()[1:]:
            p = line.split(";")
            if len(p) >= 2:
                try:
                    out.append(float(p[1]))
                except ValueError:
                    pass
    return sorted(out)


def pct(v, q):
    if not v:
        return float("nan")
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


def run(load, a, root):
    d = root / f"load-{load}"
    d.mkdir(parents=True, exist_ok=True)
    common = ["-nostdin"]
    uas = sipp(["-sf", str(SCEN / "uas_rr.xml"), "-i", "127.0.0.1", "-p", "5090", *common,
                "-timeout", f"{a.secs + 60}s"], d, "uas.stderr")
    carrier = sipp(["-sf", str(SCEN / "uas_rr.xml"), "-i", "127.0.0.1", "-p", "5092", *common,
                    "-timeout", f"{a.secs + 60}s"], d, "carrier.stderr")
    time.sleep(0.5)
    # The agent's phone: registered (digest) from 127.0.0.4, then a SIPp UAS on its Contact.
    reg = sipp([EDGE, "-sf", str(TESTS / "agent_register.xml"), "-i", "127.0.0.4", "-p", "5096",
                *common, "-m", "1", "-s", "sipp", "-au", "sipp", "-ap", "bench-only",
                "-key", "contact_port", "5094", "-timeout", "10s", "-timeout_error"], d, "reg.stderr")
    finish(reg, 15)
    phone = sipp(["-sf", str(SCEN / "uas_rr.xml"), "-i", "127.0.0.4", "-p", "5094", *common,
                  "-timeout", f"{a.secs + 60}s", "-trace_stat", "-stf", "phone_stat.csv",
                  "-fd", "1"], d, "phone.stderr")
    bg = None
    if load > 0:
        n = int(load * a.secs)
        bg = sipp([EDGE, "-sf", str(SCEN / "uac_rr.xml"), "-s", "service", "-i", "127.0.0.2",
                   "-p", "5062", *common, "-r", str(load), "-m", str(n),
                   "-timeout", f"{a.secs + 20}s", "-trace_stat", "-stf", "bg_stat.csv", "-fd", "1"],
                  d, "bg.stderr")
        time.sleep(a.warmup)
    n_em = int(a.em_rate * (a.secs - a.warmup - 2))
    em = sipp([EDGE, "-sf", str(SCEN / "uac_rr.xml"), "-s", "911", "-i", "127.0.0.3", "-p", "5064",
               *common, "-r", str(a.em_rate), "-m", str(n_em), "-timeout", f"{a.secs + 20}s",
               "-trace_stat", "-stf", "em_stat.csv", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
               "-trace_err", "-error_file", "em_err.log"], d, "em.stderr")
    # The PSAP calls the agent's leased number back (from 127.0.0.1, a trunk's address).
    time.sleep(2)
    n_psap = max(1, n_em - 4)
    psap = sipp([EDGE, "-sf", str(SCEN / "uac_rr.xml"), "-s", a.callback, "-i", "127.0.0.1",
                 "-p", "5066", *common, "-r", str(a.em_rate), "-m", str(n_psap),
                 "-timeout", f"{a.secs + 20}s", "-trace_stat", "-stf", "psap_stat.csv", "-fd", "1",
                 "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-error_file", "psap_err.log"],
                d, "psap.stderr")
    finish(em, a.secs + 30)
    finish(psap, 30)
    if bg:
        finish(bg, 10)
    for p in (uas, carrier, phone):
        finish(p, 0)
    v = rtts(d, em.pid)
    w = rtts(d, psap.pid)
    return {
        "load": load,
        "bg_calls": last_stat(d / "bg_stat.csv", "TotalCallCreated"),
        "bg_ok": last_stat(d / "bg_stat.csv", "SuccessfulCall(C)"),
        "bg_failed": last_stat(d / "bg_stat.csv", "FailedCall(C)"),
        "em_calls": last_stat(d / "em_stat.csv", "TotalCallCreated"),
        "em_ok": last_stat(d / "em_stat.csv", "SuccessfulCall(C)"),
        "em_failed": last_stat(d / "em_stat.csv", "FailedCall(C)"),
        "p50": pct(v, 0.50), "p99": pct(v, 0.99), "max": v[-1] if v else float("nan"),
        "n": len(v),
        "psap_calls": last_stat(d / "psap_stat.csv", "TotalCallCreated"),
        "psap_ok": last_stat(d / "psap_stat.csv", "SuccessfulCall(C)"),
        "psap_failed": last_stat(d / "psap_stat.csv", "FailedCall(C)"),
        # Calls the agent's phone took: the callbacks reached her, not the fallback.
        "at_agent": last_stat(d / "phone_stat.csv", "TotalCallCreated"),
        "psap_p50": pct(w, 0.50), "psap_p99": pct(w, 0.99), "psap_n": len(w),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", default="0,3000,12000", help="background calls/s, comma-separated")
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--em-rate", type=float, default=2.0)
    ap.add_argument("--out", default="/tmp/kbench/runs/emergency")
    ap.add_argument("--callback", default="+15550199000",
                    help="the agent's leased callback number (the pool's first)")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    rows = [run(int(x), a, root) for x in a.loads.split(",")]
    print("| background calls/s | ordinary placed / ok / failed | emergency placed / ok / failed "
          "| emergency INVITE->200 p50 / p99 / max (ms) | PSAP callbacks placed / ok / failed "
          "| PSAP INVITE->200 p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['load']} | {r['bg_calls']} / {r['bg_ok']} / {r['bg_failed']} | "
              f"{r['em_calls']} / {r['em_ok']} / {r['em_failed']} | "
              f"{r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.1f} (n={r['n']}) | "
              f"{r['psap_calls']} / {r['psap_ok']} / {r['psap_failed']} (at the agent: {r['at_agent']}) | "
              f"{r['psap_p50']:.1f} / {r['psap_p99']:.1f} (n={r['psap_n']}) |")
    ok = all(r["em_failed"] == 0 and r["em_ok"] == r["em_calls"] and r["psap_failed"] == 0
             and r["psap_ok"] == r["psap_calls"] and r["at_agent"] == r["psap_calls"] for r in rows)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
