"""A loopback recording proxy in front of the local S3 server (moto), for
what moto cannot show or does not do.

Usage: s3_proxy.py UPSTREAM_URL --record FILE [--update-encryption notimplemented|emulate] [--race /BUCKET/KEY]
                   [--conditional-copy notimplemented]

Prints the port it listens on (127.0.0.1) on its first line, then serves
until killed. Every request that writes (PUT, POST, DELETE) is appended to
FILE as one JSON line: method, path, query, headers (lowercased), body
(text bodies up to 64 KiB). Then:

- `PUT /BUCKET/KEY?encryption` (S3's UpdateObjectEncryption, which moto
  lacks and would take for a PutObject) is never forwarded: it is answered
  501 NotImplemented, or with `emulate` carried out here the way S3 does it
  (404 NoSuchKey for a missing key; otherwise the object's SSE-KMS key is
  changed, its data, metadata and tags kept, and 200 returned).
- `--race /BUCKET/KEY`: right after the first HEAD of that object is
  answered, another writer replaces it (new body, new metadata), the way a
  concurrent application would between rekey's read and its write.
- `--conditional-copy notimplemented`: a CopyObject carrying `If-None-Match`
  (which moto ignores and S3 enforces) is answered 501 NotImplemented, as a
  server without conditional copies would.
"""

import argparse
import http.client
import http.server
import json
import os
import re
import socketserver
import sys
import threading
import urllib.parse

import boto3
from botocore.config import Config

lock = threading.Lock()


def s3_client(upstream):
    return boto3.client(
        "s3",
        endpoint_url=upstream,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("--record", required=True)
    parser.add_argument("--update-encryption", choices=["notimplemented", "emulate"], default="notimplemented")
    parser.add_argument("--race", default="")
    parser.add_argument("--conditional-copy", choices=["forward", "notimplemented"], default="forward")
    args = parser.parse_args()
    upstream = urllib.parse.urlsplit(args.upstream)
    s3 = s3_client(args.upstream)
    raced = {"done": False}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def body(self):
            return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

        def record(self, body):
            split = urllib.parse.urlsplit(self.path)
            try:
                text = body.decode("utf-8") if len(body) <= 65536 else None
            except UnicodeDecodeError:
                text = None
            line = {
                "method": self.command,
                "path": urllib.parse.unquote(split.path),
                "query": split.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": text,
            }
            with lock, open(args.record, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

        def reply(self, status, payload=b"", content_type="application/xml"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def handle_any(self):
            body = self.body()
            split = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
            if self.command in ("PUT", "POST", "DELETE"):
                self.record(body)
            if self.command == "PUT" and "encryption" in query:
                return self.update_encryption(urllib.parse.unquote(split.path), body)
            copy = self.command == "PUT" and "x-amz-copy-source" in {k.lower() for k in self.headers.keys()}
            if copy and self.headers.get("If-None-Match") and args.conditional_copy == "notimplemented":
                return self.not_implemented()
            self.forward(body)
            if self.command == "HEAD" and args.race and urllib.parse.unquote(split.path) == args.race:
                with lock:
                    first = not raced["done"]
                    raced["done"] = True
                if first:
                    bucket, key = args.race.lstrip("/").split("/", 1)
                    s3.put_object(Bucket=bucket, Key=key, Body=b"the other writer's version", Metadata={"edk": "b3RoZXI="})

        def not_implemented(self):
            return self.reply(
                501,
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code>"
                b"<Message>A header or query you provided implies functionality that is not implemented</Message></Error>",
            )

        def update_encryption(self, path, body):
            if args.update_encryption == "notimplemented":
                return self.not_implemented()
            bucket, key = path.lstrip("/").split("/", 1)
            text = body.decode("utf-8")
            arn = re.search(r"<KMSKeyArn>([^<]+)</KMSKeyArn>", text)
            bucket_key = re.search(r"<BucketKeyEnabled>([^<]+)</BucketKeyEnabled>", text)
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError:
                return self.reply(404, b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>")
            extra = {"BucketKeyEnabled": bucket_key.group(1) == "true"} if bucket_key else {}
            s3.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="COPY",
                ServerSideEncryption="aws:kms", SSEKMSKeyId=arn.group(1), **extra,
            )
            self.reply(200)

        def forward(self, body):
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            conn.request(self.command, self.path, body=body if body else None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(k, v)
            length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(payload))
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
    sys.exit(0)
