"""A loopback HTTP proxy in front of the local KMS server (moto) that
injects the faults moto cannot make: throttling and slow answers.

Usage: fault_proxy.py UPSTREAM_URL [--throttle-every N] [--delay-every N --delay SECONDS] [--only OP,OP]
                      [--throttle-code CODE]
Prints the port it listens on (127.0.0.1) on its first line, then serves
until killed. Every N-th request (KMS, or DynamoDB's) is answered with HTTP 400
ThrottlingException (or --throttle-code, e.g. DynamoDB's
ProvisionedThroughputExceededException), or held for SECONDS before being forwarded (so a
client with a shorter timeout gives up and retries). Counts are printed to
stderr when it exits.
"""

import argparse
import http.server
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request

counts = {"requests": 0, "throttled": 0, "delayed": 0}
lock = threading.Lock()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--delay-every", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--only", default="", help="comma-separated operations to fault (default: all)")
    parser.add_argument("--throttle-code", default="ThrottlingException")
    args = parser.parse_args()
    upstream = args.upstream.rstrip("/")
    only = set(filter(None, args.only.split(",")))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            if only and operation not in only:
                return self.forward(body)
            with lock:
                counts["requests"] += 1
                n = counts["requests"]
            if args.throttle_every and n % args.throttle_every == 0:
                with lock:
                    counts["throttled"] += 1
                payload = ('{"__type":"%s","message":"Rate exceeded"}' % args.throttle_code).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if args.delay_every and n % args.delay_every == 0:
                with lock:
                    counts["delayed"] += 1
                time.sleep(args.delay)
            self.forward(body)

        def forward(self, body):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(upstream + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, payload, rheaders = response.status, response.read(), response.headers
            except urllib.error.HTTPError as e:
                status, payload, rheaders = e.code, e.read(), e.headers
            try:
                self.send_response(status)
                for k, v in rheaders.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): expected for delayed requests

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        print(counts, file=sys.stderr)


if __name__ == "__main__":
    main()
