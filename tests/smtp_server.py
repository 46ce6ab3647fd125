"""A real SMTP server (aiosmtpd) for Nudge's tests.

Every accepted message is stored in DIR as N.eml (raw) and N.json (parsed: envelope, headers,
text and HTML parts). Recipients are answered by their local part, so tests can stage failures:
`bounce...` gets 550 (permanent), `busy...` gets 451 (temporary) the first --busy times.
Prints `listening on PORT` once it accepts connections.
"""

import argparse
import collections
import email
import email.policy
import itertools
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, directory, busy):
        self.directory = directory
        self.busy = busy
        self.refused = collections.Counter()
        self.counter = itertools.count(len(os.listdir(directory)))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 mailbox does not exist"
        if local.startswith("busy") and self.refused[address] < self.busy:
            self.refused[address] += 1
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_subtype()] = part.get_content()
        parsed = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "text": parts.get("plain"),
            "html": parts.get("html"),
        }
        n = next(self.counter)
        base = os.path.join(self.directory, str(n))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w") as f:
            json.dump(parsed, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--busy", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Handler(args.dir, args.busy), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"listening on {args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
