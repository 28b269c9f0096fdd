#!/usr/bin/env python3
"""Delay and jitter a media relay adds, from a loopback capture (stdlib only).

  transit.py CAPTURE.pcap [--echo-port 16000] [--relay-ports 20000-59999]   -> JSON on stdout

The capture (tcpdump -i lo, nanosecond timestamps, a sample of the calls chosen by SSRC; see
media_bench.py --capture) holds every RTP packet of those calls four times, each time it passed
the loopback device: caller -> relay (A in), relay -> UAS echo (A out), echo -> relay (B in),
relay -> caller (B out). The relay forwards RTP unchanged (same SSRC and sequence number), so
matching (SSRC, seq) gives each packet's time inside the relay (socket queue + relay work):
  transit_{a,b}_{p50,p99,max}_ms  per direction, over all sampled packets
  jitter_{in,out}_a_ms            RFC 3550 §6.4.1 interarrival jitter of the caller's stream
                                  before and after the relay (mean over the sampled streams);
  added_jitter_a_ms               out - in: what the relay adds to the stream's jitter.
"""
import json
import statistics
import struct
import sys


def packets(path):
    """(time s, src port, dst port, ssrc, seq, rtp ts) for every IPv4/UDP/RTP packet."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B23C4D:
        div, end = 1e9, "<"
    elif magic == 0xA1B2C3D4:
        div, end = 1e6, "<"
    else:
        raise SystemExit(f"{path}: not a little-endian pcap")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    l2 = {1: 14, 113: 16, 0: 4}.get(linktype)  # Ethernet (lo), Linux cooked, BSD loopback
    if l2 is None:
        raise SystemExit(f"{path}: link type {linktype}")
    i = 24
    while i + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(end + "IIII", data[i:i + 16])
        p = data[i + 16:i + 16 + incl]
        i += 16 + incl
        ip = p[l2:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        u = ip[(ip[0] & 15) * 4:]
        if len(u) < 20:
            continue
        sport, dport = struct.unpack(">HH", u[:4])
        rtp = u[8:]
        if rtp[0] >> 6 != 2:
            continue
        seq, ts, ssrc = struct.unpack(">HII", rtp[2:12])
        yield sec + frac / div, sport, dport, ssrc, seq, ts


def pct(v, q):
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def jitter(stream):
    """RFC 3550 §6.4.1 J over [(arrival s, rtp ts)] in arrival order, 8 kHz clock, in ms."""
    j, prev = 0.0, None
    for t, ts in stream:
        if prev is not None:
            dts = (ts - prev[1]) & 0xFFFFFFFF
            if dts >= 1 << 31:
                dts -= 1 << 32
            d = abs((t - prev[0]) * 8000 - dts)
            j += (d - j) / 16
        prev = (t, ts)
    return j / 8.0


def main():
    a = sys.argv[1:]
    path = a[0]
    echo = int(a[a.index("--echo-port") + 1]) if "--echo-port" in a else 16000
    lo, hi = (int(x) for x in (a[a.index("--relay-ports") + 1] if "--relay-ports" in a else "20000-59999").split("-"))
    relay = lambda p: lo <= p <= hi  # noqa: E731
    seen = {"ain": {}, "aout": {}, "bin": {}, "bout": {}}
    streams = {"ain": {}, "aout": {}}
    for t, sp, dp, ssrc, seq, ts in packets(path):
        if dp == echo:
            k = "aout"
        elif sp == echo:
            k = "bin"
        elif relay(dp):
            k = "ain"
        elif relay(sp):
            k = "bout"
        else:
            continue
        seen[k].setdefault((ssrc, seq), t)
        if k in streams:
            streams[k].setdefault(ssrc, []).append((t, ts))
    out = {"packets": {k: len(v) for k, v in seen.items()}, "streams": len(streams["ain"])}
    for d, (i, o) in {"a": ("ain", "aout"), "b": ("bin", "bout")}.items():
        tr = sorted(1000 * (seen[o][k] - t) for k, t in seen[i].items() if k in seen[o])
        out[f"matched_{d}"] = len(tr)
        out[f"transit_{d}_p50_ms"] = round(pct(tr, 0.50), 3)
        out[f"transit_{d}_p99_ms"] = round(pct(tr, 0.99), 3)
        out[f"transit_{d}_max_ms"] = round(tr[-1], 3) if tr else float("nan")
    ji = [jitter(s) for s in streams["ain"].values() if len(s) > 10]
    jo = [jitter(s) for s in streams["aout"].values() if len(s) > 10]
    out["jitter_in_a_ms"] = round(statistics.fmean(ji), 3) if ji else float("nan")
    out["jitter_out_a_ms"] = round(statistics.fmean(jo), 3) if jo else float("nan")
    out["added_jitter_a_ms"] = round(out["jitter_out_a_ms"] - out["jitter_in_a_ms"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
