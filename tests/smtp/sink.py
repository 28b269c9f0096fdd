#!/usr/bin/env python3
"""A real SMTP relay for the notification tests (aiosmtpd): accepts every message and writes
it to a directory, one file per message, so a test can read what the edge sent.

    python3 tests/smtp/sink.py HOST PORT DIR

Prints "ready PORT" once listening (PORT 0 lets the system choose: the port it chose). Each message becomes DIR/NNNN.eml (the data as received) next
to DIR/NNNN.json: the envelope and the decoded message ({"mail_from", "rcpt_tos", "from",
"to", "subject", "message_id", "text", "html"}); both are written under a temporary name and
renamed, so a reader never sees half a file. A recipient whose local part starts
with "refuse" gets 550 at RCPT TO. Runs until killed.
"""

import asyncio
import email
import email.policy
import itertools
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out):
        self.out = out
        self.numbers = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.numbers)
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        self.write(f"{n:04}.eml", envelope.original_content)
        self.write(f"{n:04}.json", json.dumps(meta).encode())
        return "250 OK"

    def write(self, name, data):
        tmp = os.path.join(self.out, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.out, name))


async def main(host, port, out):
    os.makedirs(out, exist_ok=True)
    loop = asyncio.get_running_loop()
    # One sink for every connection: its counter numbers the files (a sink per connection
    # would restart at 0001 and overwrite the first connection's message).
    sink = Sink(out)
    server = await loop.create_server(lambda: SMTP(sink), host, port)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
