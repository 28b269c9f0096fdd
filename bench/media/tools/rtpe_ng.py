#!/usr/bin/env python3
# Copied unchanged from ../shared/bench/rtpengine/tools/rtpe_ng.py (the rtpengine reference kit).
"""Minimal rtpengine control client (stdlib only): ng protocol (bencode over UDP) and the text CLI.

  rtpe_ng.py ping | list | query CALL-ID | statistics      (ng, default 127.0.0.1:22222, env RTPE_NG)
  rtpe_ng.py cli "list totals"                              (CLI, default 127.0.0.1:9900, env RTPE_CLI)
As a module: ng(dict) -> dict, cli(str) -> str, stream_packets(query_reply) -> {tag: packets received}.
"""
import json
import os
import socket
import sys
import uuid


def benc(x):
    if isinstance(x, bool):
        x = int(x)
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, (list, tuple)):
        return b"l" + b"".join(benc(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(benc(k) + benc(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(type(x))


def bdec(b, i=0):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        out = [] if c == b"l" else {}
        while b[i:i + 1] != b"e":
            v, i = bdec(b, i)
            if c == b"l":
                out.append(v)
            else:
                w, i = bdec(b, i)
                out[v if isinstance(v, str) else v.decode(errors="replace")] = w
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    s = b[j + 1:j + 1 + n]
    try:
        s = s.decode()
    except UnicodeDecodeError:
        pass
    return s, j + 1 + n


def _addr(env, default):
    h, p = os.environ.get(env, default).rsplit(":", 1)
    return h, int(p)


def ng(cmd, addr=None, timeout=5.0):
    addr = addr or _addr("RTPE_NG", "127.0.0.1:22222")
    cookie = uuid.uuid4().hex[:12].encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(cookie + b" " + benc(cmd), addr)
        while True:
            data, _ = s.recvfrom(1 << 20)
            ck, _, body = data.partition(b" ")
            if ck == cookie:
                return bdec(body)[0]
    finally:
        s.close()


def cli(line, addr=None, timeout=10.0):
    addr = addr or _addr("RTPE_CLI", "127.0.0.1:9900")
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    return b"".join(chunks).decode(errors="replace")


def stream_packets(q):
    """{tag: RTP packets rtpengine RECEIVED from that tag's endpoint} from an ng `query` reply."""
    out = {}
    for tag, t in (q.get("tags") or {}).items():
        n = 0
        for m in t.get("medias", []):
            for st in m.get("streams", []):
                if "RTCP" in (st.get("flags") or []):
                    continue
                n += int((st.get("stats") or {}).get("packets", 0))
        out[tag] = n
    return out


if __name__ == "__main__":
    a = sys.argv[1:] or ["ping"]
    if a[0] == "cli":
        print(cli(" ".join(a[1:])))
    elif a[0] == "query":
        print(json.dumps(ng({"command": "query", "call-id": a[1]}), indent=1, default=str))
    elif a[0] == "list":
        print(json.dumps(ng({"command": "list", "limit": 100000}), indent=1, default=str))
    else:
        print(json.dumps(ng({"command": a[0]}), indent=1, default=str))
