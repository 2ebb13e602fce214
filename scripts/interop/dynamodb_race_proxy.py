"""A loopback proxy in front of the local server (moto) that makes the race
moto cannot make on demand: an application writing an item between rekey's
read and its update.

Usage: dynamodb_race_proxy.py UPSTREAM_URL --race-first N --record FILE
Prints the port it listens on (127.0.0.1) on its first line, then serves
until killed. For the first N UpdateItem requests, it first sets the item's
`edk_s` to a new value of its own (with boto3, straight to the upstream),
records it in FILE as {"pk/sk": value}, then forwards the request, whose
condition should now fail.
"""

import argparse
import http.server
import json
import os
import socketserver
import threading
import urllib.error
import urllib.request
import uuid

import boto3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("--race-first", type=int, default=1)
    parser.add_argument("--record", required=True)
    args = parser.parse_args()
    upstream = args.upstream.rstrip("/")
    ddb = boto3.client("dynamodb", endpoint_url=upstream, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    lock = threading.Lock()
    raced = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("X-Amz-Target", "").endswith(".UpdateItem"):
                request = json.loads(body)
                with lock:
                    race = len(raced) < args.race_first
                    if race:
                        key = request["Key"]
                        value = f"application write {uuid.uuid4()}"
                        ddb.update_item(
                            TableName=request["TableName"],
                            Key=key,
                            UpdateExpression="SET edk_s = :v",
                            ExpressionAttributeValues={":v": {"S": value}},
                        )
                        raced[f"{key['pk']['S']}/{key['sk']['N']}"] = value
                        with open(args.record, "w") as f:
                            json.dump(raced, f)
            self.forward(body)

        def forward(self, body):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(upstream + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, payload, rheaders = response.status, response.read(), response.headers
            except urllib.error.HTTPError as e:
                status, payload, rheaders = e.code, e.read(), e.headers
            self.send_response(status)
            for k, v in rheaders.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
