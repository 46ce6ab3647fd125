"""A real HTTP server receiving Nudge's tag webhook in the tests.

Every POST is stored in DIR as N.json: {"path", "headers", "body"}. The first --fail requests
are answered 503 (the receiver having a bad moment); the rest 204. Prints `listening on PORT`
once it accepts connections.
"""

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--fail", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    lock = threading.Lock()
    state = {"requests": 0, "stored": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            with lock:
                state["requests"] += 1
                if state["requests"] <= args.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                n = state["stored"]
                state["stored"] += 1
            record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            path = os.path.join(args.dir, f"{n}.json")
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.rename(path + ".tmp", path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
