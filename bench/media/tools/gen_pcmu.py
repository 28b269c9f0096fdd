#!/usr/bin/env python3
# Copied unchanged from ../shared/bench/rtpengine/tools/gen_pcmu.py (the rtpengine reference kit).
"""Write a raw G.711 mu-law (PCMU) file for SIPp's rtp_stream: a 440 Hz tone at -12 dBFS.

  gen_pcmu.py OUT_FILE [seconds=1]     -> 8000 bytes per second (160 bytes = one 20 ms RTP payload)
"""
import math
import sys


def lin2ulaw(x):  # G.711 mu-law encoder for one 16-bit sample
    BIAS, CLIP = 0x84, 32635
    sign = 0x80 if x < 0 else 0
    x = min(abs(x), CLIP) + BIAS
    exp = 7
    mask = 0x4000
    while exp > 0 and not (x & mask):
        exp -= 1
        mask >>= 1
    mant = (x >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF


out = sys.argv[1]
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
n = int(8000 * secs)
amp = 32767 * 10 ** (-12 / 20)
data = bytes(lin2ulaw(int(amp * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(n))
with open(out, "wb") as f:
    f.write(data)
