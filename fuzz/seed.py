#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from SIP message files.

Usage: fuzz/seed.py [--only TARGET] [DIR ...]
       (default DIRs: crates/sip/tests/torture and fuzz/seeds)

Every *.sip file found (recursively) becomes:
- codec/<name>        the message as is;
- framing/<name>      3 header bytes (limit selector, chunk seed) + the message, and a few
                      streams of several messages with CRLF keep-alives between them;
- multipart/<name>    for messages with a multipart body: boundary length, boundary, body;
- transaction/<name>  streams of several messages.
Files already in the corpus are kept; seeds are overwritten, and a copy of a seed that
libFuzzer saved under its SHA-1 name is removed (the named file stays).
"""
import hashlib, os, re, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
only = None
if args[:1] == ["--only"]:
    only, args = args[1], args[2:]
dirs = args or [os.path.join(root, "crates/sip/tests/torture"), os.path.join(root, "fuzz/seeds")]
corpus = os.path.join(root, "fuzz/corpus")

msgs = []
for d in dirs:
    for dp, _, files in os.walk(d):
        for f in sorted(files):
            if f.endswith(".sip"):
                rel = os.path.relpath(os.path.join(dp, f), d).replace(os.sep, "-")
                msgs.append((rel, open(os.path.join(dp, f), "rb").read()))

def put(target, name, data):
    if only and target != only:
        return
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    open(os.path.join(corpus, target, name), "wb").write(data)
    dup = os.path.join(corpus, target, hashlib.sha1(data).hexdigest())
    if os.path.exists(dup):
        os.remove(dup)

for i, (name, data) in enumerate(msgs):
    put("codec", name, data)
    # limit selector 6 = 65535; chunk seed varies per file
    put("framing", name, bytes([6, i & 0xFF, (i * 7) & 0xFF]) + data)
    m = re.search(rb'boundary="?([^";\r\n]+)"?', data, re.I)
    head, sep, body = data.partition(b"\r\n\r\n")
    if m and sep:
        b = m.group(1)
        put("multipart", name, bytes([len(b)]) + b + body)

# Streams: well-formed messages back to back with keep-alives, for framing and transactions.
good = [d for n, d in msgs if re.search(rb"\r\n(Content-Length|l)\s*:", d, re.I) and b"\r\n\r\n" in d]
for k in range(min(8, len(good))):
    parts = good[k::8][:4]
    stream = b"\r\n\r\n".join(parts) + b"\r\n"
    tag = hashlib.sha1(stream).hexdigest()[:12]
    put("framing", f"stream-{tag}", bytes([6, k * 31 & 0xFF, k * 17 & 0xFF]) + stream)
    put("transaction", f"stream-{tag}", stream)
print(f"{len(msgs)} messages seeded into {corpus}")
