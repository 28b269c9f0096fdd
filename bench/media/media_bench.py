#!/usr/bin/env python3
"""Media relay benchmark, lifeline beside rtpengine: N concurrent calls with 20 ms PCMU through a
media relay, the SAME SIPp load against each relay, alternating at every step (stdlib only;
loopback only; every run bounded in calls and in time). Entry point: run.sh.

Adapted from ../shared/bench/rtpengine/media_bench.py (the rtpengine reference kit of this
machine, see ../shared/bench/RTPENGINE.md): the per-run measurement is the kit's, unchanged for
rtpengine; lifeline's figures come from its /metrics instead of rtpengine's ng counters.

Per step (N calls), per repeat, per relay (the order of the relays flips at every repeat):
  SIPp UAS on 127.0.0.1:5090 (scenarios/uas_echo.xml, -rtp_echo on 127.0.0.1:16000) and SIPp UAC
  (scenarios/uac_media.xml: N calls at --rate calls/s, each streaming PCMU 50 packets/s, held so that
  all N calls are up for the whole measurement window) -> the relay's SIP side -> UAS.
    rtpengine: UAC on 127.0.0.1 -> Kamailio 127.0.0.1:5070 (rtpengine module) -> UAS; media via
               rtpengine (exactly the kit's topology).
    lifeline:  UAC on 127.0.0.2 (the bench dialplan trusts it, so calls are not challenged) ->
               lifeline 127.0.0.1:5080, which is proxy AND relay ([media] anchor = "always") -> UAS.
  The relay forwards caller->UAS (A) and the UAS's echo back towards the caller (B).

  Window = --window seconds, starting --settle s after the last call was placed. Over the window:
    relay CPU   utime+stime of the relay process (all threads) from /proc/PID/stat. For lifeline
                that is the whole edge process, which also does SIP; signalling is ~0 in the
                window because every call is set up before it and torn down after it.
    pps         packets relayed per second (A+B):
                  rtpengine: its per-call ng counters (`query` of every call at both ends of the
                    window), as the kit does;
                  lifeline: the deltas of lifeline_media_packets_total{dir="plain_to_callee"} and
                  {dir="plain_to_caller"} on /metrics (loss = 1 - to_caller / to_callee, as rtpengine's).
                    lifeline refreshes its media metrics once a second (its sweep), so the driver
                    polls /metrics every 20 ms just before the window and just after it until the
                    value moves, and divides by the time between those two refreshes (error
                    <= 2 x 20 ms over ~20 s). The polls are outside the CPU window.
    relayed     pps / (100 x calls): both directions relayed, as a fraction of the nominal rate.
    loss        rtpengine: 1 - sum(B)/sum(A) from its counters (the kit's figure).
                lifeline: not split by direction in its metrics, so no such figure (see README).
    rt loss     1 - e2e, for both relays: the round trip UAC -> relay -> UAS echo -> relay -> UAC.
    e2e         (RcvbufErrors delta - drops on the relay's and the UAS's sockets) / (50 x calls x s):
                SIPp's UAC never reads the returned stream, so every returned packet that reaches
                the UAC host is dropped there and counted in RcvbufErrors (whole machine).
    ingress     rtpengine only: sum(A) / (50 x calls x s), what reached the relay from the UAC.
    drops       kernel receive-queue drops (/proc/net/udp) on the relay's sockets and on the UAS
                echo socket; relay_dropped: the relay's own dropped count (lifeline's
                lifeline_media_dropped_total delta, rtpengine's per-stream errors).
    other       CPU of every process that is not ours (noisy neighbour); worst second too. The
                relay that is idle in a run is counted apart (cpu_idle_relays).
    transit     with --capture S: S s of tcpdump on lo (a ~1/64 sample of the calls by SSRC), then
                tools/transit.py: time in the relay per packet and direction (p50/p99/max), RFC 3550
                jitter of the caller's streams before and after the relay. Costs CPU: such runs
                are flagged (capture column).
  PASS: every call up at both ends of the window, SIPp UAC exit status 0 within its time bound,
        and rtpengine: loss < --max-loss (1 %), ingress >= --min-ingress (0.99);
            lifeline: rt loss < --max-loss and relayed >= --min-ingress.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sipp" / "tools"))
sys.path.insert(0, str(HERE / "tools"))
import sipbench as sb  # noqa: E402  (/proc helpers, quiet wait, SIPp stop)
import rtpe_ng  # noqa: E402

SCEN = HERE / "scenarios"
# the echo port is 16000, not the kit's 6000: SIPp's default media port, which other jobs' SIPp tests take
UAS_PORT, UAC_PORT, ECHO_PORT = 5090, 5061, 16000


# ----------------------------------------------------------------------------- rtpengine (the kit's)
def query_all(prefix_pid):
    """{call-id: (A packets, B packets, errors, t)} for every call of the UAC with pid prefix_pid."""
    lst = rtpe_ng.ng({"command": "list", "limit": 100000}, timeout=10)
    out = {}
    for cid in lst.get("calls", []):
        if f"-{prefix_pid}@" not in cid:
            continue
        try:
            q = rtpe_ng.ng({"command": "query", "call-id": cid}, timeout=5)
        except OSError:
            continue
        a = b = err = 0
        for tag, t in (q.get("tags") or {}).items():
            n = e = 0
            for m in t.get("medias", []):
                for st in m.get("streams", []):
                    if "RTCP" in (st.get("flags") or []):
                        continue
                    s = st.get("stats") or {}
                    n += int(s.get("packets", 0))
                    e += int(s.get("errors", 0))
            if "SIPpTag00" in tag:
                a += n
            else:
                b += n
            err += e
        out[cid] = (a, b, err, time.monotonic())
    return out


def cli_pps():
    try:
        txt = rtpe_ng.cli("list totals")
    except OSError:
        return -1
    for line in txt.splitlines():
        if "Packets per second (userspace)" in line:
            return int(line.split(":")[-1].strip() or 0)
    return -1


# ----------------------------------------------------------------------------- lifeline /metrics
def scrape(admin):
    """{metric line name with labels: value} from lifeline's /metrics."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as r:
        text = r.read().decode(errors="replace")
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


TO_CALLEE = 'lifeline_media_packets_total{dir="plain_to_callee"}'
TO_CALLER = 'lifeline_media_packets_total{dir="plain_to_caller"}'


def plain(m):
    """Packets a plain pair relayed, both ways."""
    return m.get(TO_CALLEE, 0) + m.get(TO_CALLER, 0)


def metrics_edge(admin, max_wait=1.6):
    """(monotonic time, metrics) right after lifeline's next media sweep (the 1 s refresh of its
    media counters): poll until the plain counter moves. Without traffic it never moves: then the
    last scrape after max_wait."""
    m0 = scrape(admin)
    end = time.monotonic() + max_wait
    while time.monotonic() < end:
        time.sleep(0.02)
        t = time.monotonic()
        m = scrape(admin)
        if plain(m) != plain(m0):
            return t, m, time.monotonic() - t
    t = time.monotonic()
    return t, scrape(admin), -1.0


# ----------------------------------------------------------------------------- kernel counters
def socket_inodes(pids):
    out = set()
    for p in pids:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    out.add(int(link[8:-1]))
        except OSError:
            pass
    return out


def udp_drops():
    """{inode: drops} for every UDP socket (/proc/net/udp, last column)."""
    d = {}
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                p = line.split()
                d[int(p[9])] = int(p[-1])
    except (OSError, IndexError, ValueError):
        pass
    return d


# ----------------------------------------------------------------------------- one run
class Relay:
    def __init__(self, name, target, uac_ip, relay, proxy, admin=None):
        self.name, self.target, self.uac_ip = name, target, uac_ip
        self.relay, self.proxy, self.admin = frozenset(relay), frozenset(proxy), admin


def run_step(a, out, n, rep, r, all_ours):
    d = out / f"{r.name}-n{n}-{rep}"
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(HERE / "tools" / "gen_pcmu.py"), str(d / "pcmu.raw"), "1"], check=True)
    ramp = n / a.rate
    tail = 3 + n / 300.0 + 2                          # end-of-window queries (+ lifeline's edge polls)
    hold = ramp + a.settle + 2 + a.window + tail      # +2: lifeline's start-edge poll
    bound = hold + ramp + 60                          # hard bound for the UAC
    common = ["-nostdin", "-buff_size", "4194304"]
    # the ports are fixed (the dialplan and Kamailio's config send calls to 5090); another job's SIPp
    # may hold them for a while (its default media port is 6000): wait, bounded
    for i in range(3000):
        if sb.port_free(UAS_PORT) and sb.port_free(ECHO_PORT):
            break
        if i % 100 == 99:
            print(f"   (waiting: UDP {UAS_PORT}/{ECHO_PORT} in use: "
                  f"{subprocess.run(['ss', '-Hlunp', f'sport = :{UAS_PORT} or sport = :{ECHO_PORT}'], capture_output=True, text=True).stdout.strip()})",
                  flush=True)
        time.sleep(0.1)
    else:
        sys.exit(f"UDP {UAS_PORT}/{ECHO_PORT} still in use after 300 s")
    uas_cmd = ["sipp", "-sf", str(SCEN / "uas_echo.xml"), "-p", str(UAS_PORT), "-i", "127.0.0.1", *common,
               "-mp", str(ECHO_PORT), "-rtp_echo", "-timeout", f"{int(bound + 30)}s", "-trace_stat",
               "-stf", "uas_stat.csv", "-fd", "1", "-trace_err", "-error_file", "uas_err.log"]
    uas_env = dict(os.environ)
    if a.uas_rcvbuf:
        uas_env["LD_PRELOAD"] = a.uas_rcvbuf
    uas = subprocess.Popen(uas_cmd, cwd=d, env=uas_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=open(d / "uas.stderr", "w"))
    for _ in range(50):
        if not sb.port_free(UAS_PORT):
            break
        time.sleep(0.1)
    time.sleep(0.3)
    uac_cmd = ["sipp", r.target, "-sf", str(SCEN / "uac_media.xml"), "-s", "service", "-p", str(UAC_PORT),
               "-i", r.uac_ip, *common, "-m", str(n), "-l", str(n), "-r", str(a.rate), "-d", str(int(hold * 1000)),
               "-timeout", f"{int(bound)}s", "-trace_stat", "-stf", "uac_stat.csv", "-fd", "1",
               "-trace_err", "-error_file", "uac_err.log"]
    (d / "cmd.txt").write_text(" ".join(uac_cmd) + "\n" + " ".join(uas_cmd) + "\n")
    t0 = time.monotonic()
    uac = subprocess.Popen(uac_cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=open(d / "uac.stderr", "w"))
    ws = t0 + ramp + a.settle
    while time.monotonic() < ws and uac.poll() is None:
        time.sleep(0.05)
    ng = r.admin is None
    q0 = query_all(uac.pid) if ng else {}
    e0 = metrics_edge(r.admin) if not ng else None
    cap = None
    if a.capture > 0:
        # a sample of the calls (SSRC low byte & 63 == 0, ~1/64) on every leg, for tools/transit.py;
        # tcpdump costs CPU too, so these runs are flagged (capture column) and kept apart
        cap = subprocess.Popen(["timeout", "-s", "INT", str(a.capture), "tcpdump", "-i", "lo", "-n", "-s", "80",
                                "--time-stamp-precision=nano", "-B", "16384", "-w", str(d / "sample.pcap"),
                                f"udp and (udp[19] & 0x3f) = 0 and (port {ECHO_PORT} or portrange 20000-59999)"],
                               stdout=subprocess.DEVNULL, stderr=open(d / "tcpdump.stderr", "w"))
        time.sleep(0.5)
    ino_relay, ino_uas = socket_inodes(r.relay), socket_inodes({uas.pid})
    dr0 = udp_drops()
    ours = set(all_ours) | {uac.pid, uas.pid}
    idle = set(all_ours) - set(r.relay) - set(r.proxy)
    r0 = sb.sum_ticks(r.relay); k0 = sb.sum_ticks(r.proxy); i0 = sb.sum_ticks(idle)
    c0 = sb.proc_ticks(uac.pid) or 0; s0 = sb.proc_ticks(uas.pid) or 0
    b0, _ = sb.sys_cpu(); u0 = sb.udp_counters(); tw0 = time.monotonic()
    samp = sb.Sampler(ours); samp.start()
    mid = tw0 + a.window / 2
    pps_cli = -1
    while time.monotonic() < tw0 + a.window and uac.poll() is None:
        if pps_cli < 0 and time.monotonic() >= mid and ng:
            pps_cli = cli_pps()
        time.sleep(0.05)
    samp.stop()
    r1 = sb.sum_ticks(r.relay); k1 = sb.sum_ticks(r.proxy); i1 = sb.sum_ticks(idle)
    c1 = sb.proc_ticks(uac.pid) or c0; s1 = sb.proc_ticks(uas.pid) or s0
    b1, _ = sb.sys_cpu(); u1 = sb.udp_counters(); tw1 = time.monotonic()
    dr1 = udp_drops()
    q1 = query_all(uac.pid) if ng else {}
    e1 = metrics_edge(r.admin) if not ng else None
    w = tw1 - tw0
    # wait for the UAC to finish its calls (bounded), then stop the UAS
    while uac.poll() is None and time.monotonic() - t0 < bound:
        time.sleep(0.2)
    stopped = uac.poll() is None
    if stopped:
        sb.stop_sipp(uac.pid)
        uac.wait()
    time.sleep(1.2)
    sb.stop_sipp(uas.pid)
    uas.wait()

    row = sb.last_stat_row(d / "uac_stat.csv")
    tick = sb.CLK_TCK
    transit = {}
    if cap is not None:
        cap.wait()
        t = subprocess.run([sys.executable, str(HERE / "tools" / "transit.py"), str(d / "sample.pcap"),
                            "--echo-port", str(ECHO_PORT)], capture_output=True, text=True)
        (d / "transit.json").write_text(t.stdout + t.stderr)
        try:
            transit = json.loads(t.stdout)
        except ValueError:
            transit = {}
    res = dict(mode="rtp", relay=r.name, calls=n, rep=rep)
    if ng:
        common_ids = set(q0) & set(q1)
        da = sum(q1[c][0] - q0[c][0] for c in common_ids)
        db = sum(q1[c][1] - q0[c][1] for c in common_ids)
        de = sum(q1[c][2] - q0[c][2] for c in common_ids)
        dt = sum(q1[c][3] - q0[c][3] for c in common_ids)  # call-seconds covered by the counters
        secs = dt / max(len(common_ids), 1)
        res.update(calls_up_start=len(q0), calls_up_end=len(q1),
                   pps=round((da + db) / secs, 0) if common_ids else 0, pps_cli_mid=pps_cli,
                   loss_pct=round(100.0 * (1 - db / da), 3) if da else float("nan"),
                   ingress=round(da / (50.0 * dt), 4) if dt else float("nan"), relay_dropped=de,
                   metrics_span_s=round(secs, 3), metrics_delta=da + db, pps_by_refreshes=-1,
                   scrape_latency_ms=-1)
    else:
        (ta, ma, la), (tb, mb, lb) = e0, e1
        dtm = tb - ta
        dp = plain(mb) - plain(ma)
        d_callee = mb.get(TO_CALLEE, 0) - ma.get(TO_CALLEE, 0)
        d_caller = mb.get(TO_CALLER, 0) - ma.get(TO_CALLER, 0)
        # the scrapes' own latency blurs the refresh times when the edge is loaded; the refreshes
        # come every second (+ the timer's lag), so dp / whole seconds is the other estimate
        res.update(calls_up_start=int(ma.get("lifeline_media_legs", 0)),
                   calls_up_end=int(mb.get("lifeline_media_legs", 0)),
                   pps=round(dp / dtm, 0) if dtm > 0 else 0, pps_cli_mid=-1,
                   metrics_span_s=round(dtm, 3), metrics_delta=int(dp),
                   pps_by_refreshes=round(dp / max(round(dtm), 1), 0),
                   scrape_latency_ms=round(1000 * max(la, lb), 1),
                   loss_pct=round(100.0 * (1 - d_caller / d_callee), 3) if d_callee else float("nan"),
                   ingress=round(d_callee / (50.0 * dtm), 4) if dtm > 0 else float("nan"),
                   relay_dropped=int(mb.get("lifeline_media_dropped_total", 0)
                                     - ma.get("lifeline_media_dropped_total", 0)))
    res.update(
        # SIPp's exit status is 0 only if every call succeeded; its last periodic stat row (-fd 1) can
        # predate the last calls, so the counters below are informative only
        sipp_rc=uac.returncode, sipp_stopped=stopped,
        sipp_ok=sb.num(row, "SuccessfulCall(C)"), sipp_failed=sb.num(row, "FailedCall(C)"),
        window_s=round(w, 2),
        cpu_relay=round(100.0 * (r1 - r0) / tick / w, 1),
        cpu_proxy=round(100.0 * (k1 - k0) / tick / w, 1),
        cpu_uac=round(100.0 * (c1 - c0) / tick / w, 1),
        cpu_uas=round(100.0 * (s1 - s0) / tick / w, 1),
        cpu_idle_relays=round(100.0 * (i1 - i0) / tick / w, 1),
        cpu_total=round(100.0 * (b1 - b0) / tick / w, 1),
        drops_relay=sum(dr1.get(i, 0) - dr0.get(i, 0) for i in ino_relay if i in dr0),
        drops_uas=sum(dr1.get(i, 0) - dr0.get(i, 0) for i in ino_uas if i in dr0),
        rcvbuf_err=u1.get("RcvbufErrors", 0) - u0.get("RcvbufErrors", 0),
        in_err=u1.get("InErrors", 0) - u0.get("InErrors", 0),
        sndbuf_err=u1.get("SndbufErrors", 0) - u0.get("SndbufErrors", 0),
        other_max1s=round(max(samp.other, default=0.0), 1),
    )
    res["cpu_other"] = round(max(0.0, res["cpu_total"] - res["cpu_relay"] - res["cpu_proxy"] - res["cpu_uac"]
                                 - res["cpu_uas"] - res["cpu_idle_relays"]), 1)
    res["relay_per_100_calls"] = round(res["cpu_relay"] / (n / 100.0), 2)
    res["relayed"] = round(res["pps"] / (100.0 * n), 4)
    # end-to-end check independent of the relay's counters: SIPp's UAC never reads the returned stream,
    # so every returned packet is dropped at its sockets and counted in RcvbufErrors (whole machine)
    res["e2e_delivered"] = round((res["rcvbuf_err"] - res["drops_relay"] - res["drops_uas"]) / (50.0 * n * w), 4)
    res["rt_loss_pct"] = round(100.0 * (1 - res["e2e_delivered"]), 3)
    ok_up = res["calls_up_start"] >= n and res["calls_up_end"] >= n
    ok_sipp = res["sipp_failed"] == 0 and uac.returncode == 0 and not stopped
    if ng:
        ok_media = res["loss_pct"] < a.max_loss and res["ingress"] >= a.min_ingress
    else:
        ok_media = res["rt_loss_pct"] < a.max_loss and res["relayed"] >= a.min_ingress
    res["pass"] = bool(ok_up and ok_sipp and ok_media)
    res["capture"] = a.capture
    for k in ("transit_a_p50_ms", "transit_a_p99_ms", "transit_a_max_ms", "transit_b_p50_ms", "transit_b_p99_ms",
              "transit_b_max_ms", "jitter_in_a_ms", "jitter_out_a_ms", "added_jitter_a_ms", "matched_a", "streams"):
        res[k] = transit.get(k, "")
    (d / "cpu_per_second.txt").write_text(
        "busy% other%\n" + "".join(f"{b:.0f} {o:.0f}\n" for b, o in zip(samp.busy, samp.other)))
    return res


COLS = ["relay", "calls", "rep", "calls_up_start", "calls_up_end", "sipp_failed", "pps", "relayed", "loss_pct",
        "rt_loss_pct", "cpu_relay", "relay_per_100_calls", "cpu_proxy", "cpu_uac", "cpu_uas", "cpu_other",
        "other_max1s", "cpu_total", "drops_relay", "drops_uas", "relay_dropped", "pass"]


def pids(spec):
    return {int(x) for x in spec.replace(",", " ").split()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="100 400 800 1200")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rate", type=float, default=200, help="call setup rate while ramping up")
    ap.add_argument("--settle", type=float, default=4)
    ap.add_argument("--window", type=float, default=20)
    ap.add_argument("--relays", default="rtpengine lifeline", help="which relays, in the order of repeat 1")
    ap.add_argument("--rtpengine-target", default="127.0.0.1:5070", help="Kamailio with the rtpengine module")
    ap.add_argument("--rtpengine-pid", default="")
    ap.add_argument("--kamailio-pids", default="", help="default: owners of the Kamailio UDP port")
    ap.add_argument("--lifeline-target", default="127.0.0.1:5080")
    ap.add_argument("--lifeline-pid", default="")
    ap.add_argument("--lifeline-admin", default="127.0.0.1:18088")
    ap.add_argument("--lifeline-uac-ip", default="127.0.0.2")
    ap.add_argument("--max-loss", type=float, default=1.0)
    ap.add_argument("--min-ingress", type=float, default=0.99)
    ap.add_argument("--stop-after", type=int, default=1,
                    help="drop a relay after this many steps in a row where it failed every repeat")
    ap.add_argument("--quiet-wait", type=float, default=60)
    ap.add_argument("--quiet-max", type=float, default=15)
    ap.add_argument("--out", required=True)
    ap.add_argument("--capture", type=float, default=0,
                    help="seconds of tcpdump in the window (a sample of the calls) for the relay's delay and "
                         "jitter (tools/transit.py); costs CPU, so such runs are flagged")
    ap.add_argument("--uas-rcvbuf", default="", help="LD_PRELOAD shim (tools/rcvbuf.c) for the UAS echo socket")
    a = ap.parse_args()
    if not shutil.which("sipp"):
        sys.exit("sipp not found (apt-get install sip-tester)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    relays = []
    for name in a.relays.split():
        if name == "rtpengine":
            if not a.rtpengine_pid:
                sys.exit("--rtpengine-pid missing")
            kam = (sb.tree(pids(a.kamailio_pids)) if a.kamailio_pids
                   else sb.pids_on_udp_port(int(a.rtpengine_target.rsplit(":", 1)[1])))
            relays.append(Relay("rtpengine", a.rtpengine_target, "127.0.0.1", sb.tree(pids(a.rtpengine_pid)), kam))
        elif name == "lifeline":
            if not a.lifeline_pid:
                sys.exit("--lifeline-pid missing")
            relays.append(Relay("lifeline", a.lifeline_target, a.lifeline_uac_ip, sb.tree(pids(a.lifeline_pid)),
                                set(), admin=a.lifeline_admin))
        else:
            sys.exit(f"unknown relay {name}")
    all_ours = frozenset().union(*(r.relay | r.proxy for r in relays))
    for r in relays:
        print(f"# {r.name}: target {r.target}, UAC on {r.uac_ip}, relay pids {sorted(r.relay)}, "
              f"proxy pids {sorted(r.proxy)}", flush=True)
    print(f"# out {out}; cpu columns: % of ONE core (machine = 200 %), over the window", flush=True)
    print(" ".join(f"{c:>9}" for c in COLS), flush=True)
    csvf = out / "results.csv"
    fails = {r.name: 0 for r in relays}
    for n in (int(x) for x in a.steps.split()):
        live = [r for r in relays if fails[r.name] < a.stop_after]
        if not live:
            break
        runs = {r.name: [] for r in live}
        for rep in range(1, a.repeats + 1):
            for r in (live if rep % 2 else list(reversed(live))):
                oth = sb.wait_quiet(all_ours, a.quiet_wait, a.quiet_max)
                res = run_step(a, out, n, rep, r, all_ours)
                res["other_before"] = round(oth, 1)
                new = not csvf.exists()
                # one column order for every row: the file's header (the relays' rows build their
                # keys in different orders)
                fields = list(res.keys()) if new else next(csv.reader(open(csvf)))
                with open(csvf, "a", newline="") as f:
                    wr = csv.DictWriter(f, fieldnames=fields, restval="")
                    if new:
                        wr.writeheader()
                    wr.writerow(res)
                print(" ".join(f"{str(res[c]):>9}" for c in COLS), flush=True)
                runs[r.name].append(res)
        for r in live:
            fails[r.name] = 0 if any(x["pass"] for x in runs[r.name]) else fails[r.name] + 1
    print("# done", flush=True)


if __name__ == "__main__":
    main()
