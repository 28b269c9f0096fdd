#!/usr/bin/env python3
"""Side-by-side markdown of media_bench.py results.csv files: per (calls, relay) the min / median over
the repeats, then lifeline / rtpengine CPU per 100 calls.

Adapted from ../shared/bench/rtpengine/tools/media_summary.py (the rtpengine kit's summary).
"""
import csv
import statistics
import sys
from collections import defaultdict

# --max-other X: only the runs where the other processes of the machine used <= X % of a core on
# average over the window (a quieter subset; the noisy neighbour changes per-packet CPU both ways)
args = sys.argv[1:]
max_other = None
if args[:1] == ["--max-other"]:
    max_other, args = float(args[1]), args[2:]
g = defaultdict(list)
for p in args:
    with open(p) as f:
        for r in csv.DictReader(f):
            if max_other is not None and float(r["cpu_other"]) > max_other:
                continue
            g[(int(r["calls"]), r["relay"])].append(r)


def vals(rs, k):
    return sorted(float(r[k]) for r in rs)


def mm(rs, k, fmt="{:.0f}"):
    v = vals(rs, k)
    return f"{fmt.format(v[0])} / {fmt.format(statistics.median(v))}"


def med(rs, k):
    return statistics.median(vals(rs, k))


def loss(rs):
    v = [float(r["loss_pct"]) for r in rs if r["loss_pct"] not in ("", "nan")]
    return f"{max(v):.3f}" if v else "n/a"


print("| calls | relay | runs | pass | pps relayed min/med | relayed / nominal min | loss % max (relay counters) "
      "| round-trip loss % max (kernel) | %relay min/med | **%relay per 100 calls min/med** | %proxy med "
      "| %UAC / %UAS med | %other avg med (max 1 s) | relay/UAS socket drops max | relay's own drops max "
      "| machine busy % med |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (n, relay), rs in sorted(g.items()):
    npass = sum(r["pass"] == "True" for r in rs)
    print(f"| {n} | {relay} | {len(rs)} | {npass}/{len(rs)} | {mm(rs, 'pps')} | {vals(rs, 'relayed')[0]:.3f} | "
          f"{loss(rs)} | {max(vals(rs, 'rt_loss_pct')):.3f} | {mm(rs, 'cpu_relay')} | "
          f"**{mm(rs, 'relay_per_100_calls', '{:.1f}')}** | {med(rs, 'cpu_proxy'):.0f} | "
          f"{med(rs, 'cpu_uac'):.0f} / {med(rs, 'cpu_uas'):.0f} | "
          f"{med(rs, 'cpu_other'):.0f} ({max(vals(rs, 'other_max1s')):.0f}) | "
          f"{max(int(r['drops_relay']) for r in rs)} / {max(int(r['drops_uas']) for r in rs)} | "
          f"{max(int(float(r['relay_dropped'])) for r in rs)} | {med(rs, 'cpu_total'):.0f} |")

print()
print("| calls | lifeline %core per 100 calls (med) | rtpengine %core per 100 calls (med) | ratio lifeline / rtpengine "
      "| lifeline µs CPU per relayed packet | rtpengine µs CPU per relayed packet |")
print("|---|---|---|---|---|---|")
for n in sorted({k[0] for k in g}):
    ll, re_ = g.get((n, "lifeline")), g.get((n, "rtpengine"))
    if not ll or not re_:
        continue
    a, b = med(ll, "relay_per_100_calls"), med(re_, "relay_per_100_calls")

    def us(rs):
        v = [10000.0 * float(r["cpu_relay"]) / float(r["pps"]) for r in rs if float(r["pps"]) > 0]
        return f"{statistics.median(v):.1f}" if v else "n/a"

    print(f"| {n} | {a:.1f} | {b:.1f} | {a / b:.2f} | {us(ll)} | {us(re_)} |" if b else
          f"| {n} | {a:.1f} | {b:.1f} | n/a | {us(ll)} | {us(re_)} |")

# runs with a capture (media_bench.py --capture): the delay and jitter the relay adds, on a sample
cap = [(k, rs) for k, rs in sorted(g.items()) if any(r.get("transit_a_p50_ms") not in (None, "") for r in rs)]
if cap:
    print()
    print("| calls | relay | repeat | sampled streams | A (caller->UAS) in relay p50 / p99 / max ms "
          "| B (echo->caller) in relay p50 / p99 / max ms | jitter before / after relay (A) ms | added jitter ms "
          "| %relay per 100 calls (with tcpdump) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (n, relay), rs in cap:
        for r in rs:
            if r.get("transit_a_p50_ms") in (None, ""):
                continue
            print(f"| {n} | {relay} | {r['rep']} | {r['streams']} | {r['transit_a_p50_ms']} / {r['transit_a_p99_ms']} / "
                  f"{r['transit_a_max_ms']} | {r['transit_b_p50_ms']} / {r['transit_b_p99_ms']} / {r['transit_b_max_ms']} | "
                  f"{r['jitter_in_a_ms']} / {r['jitter_out_a_ms']} | {r['added_jitter_a_ms']} | {r['relay_per_100_calls']} |")
