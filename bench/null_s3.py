#!/usr/bin/env python3
"""A stand-in S3 endpoint that accepts every upload and keeps nothing.

For measuring ringest's own memory and CPU under loads no disk here can hold (1,000 concurrent
64 MiB uploads are 64 GiB, three times that with Garage's replication). It answers just what
ringest's uploads need: PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, and 404 to HeadObject. Signatures are not checked. Never a real store.

Usage: null_s3.py [PORT]   (prints "null-s3 listening on 127.0.0.1:PORT", serves until killed)
"""

import http.server
import itertools
import socketserver
import sys

CHUNK = 1 << 20
_ids = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _drain(self):
        left = int(self.headers.get("Content-Length", "0"))
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while left > 0:
            n = self.rfile.readinto(view[: min(CHUNK, left)])
            if not n:
                break
            left -= n

    def _reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_PUT(self):
        self._drain()
        self._reply(200, headers=[("ETag", '"%032x"' % next(_ids))])

    def do_POST(self):
        self._drain()
        query = self.path.split("?", 1)[-1].split("&")
        if any(q == "uploads" or q.startswith("uploads=") for q in query):
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                "<Bucket>b</Bucket><Key>k</Key><UploadId>u%d</UploadId>"
                "</InitiateMultipartUploadResult>" % next(_ids)
            ).encode()
        else:
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b"<Bucket>b</Bucket><Key>k</Key><ETag>\"x\"</ETag></CompleteMultipartUploadResult>"
            )
        self._reply(200, body, [("Content-Type", "application/xml")])

    def do_DELETE(self):
        self._drain()
        self._reply(204)

    def do_HEAD(self):
        self._reply(404)

    def do_GET(self):
        self._reply(404)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    srv = Server(("127.0.0.1", port), Handler)
    print("null-s3 listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
