"""The relay's HTTP side: a threaded proxy in front of fake-gcs-server that turns finalized
uploads into CloudEvents (edgeship.localcloud.relay.Relay) and serves its control endpoints.
Run as ``python -m edgeship.localcloud.relay_server`` (edgeship.localcloud.stack starts it)."""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgeship.localcloud.relay import _NOT_XML_API, HOP_BY_HOP, Relay, finalized_object

log = logging.getLogger(__name__)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls
    relay: Relay  # set on the subclass made by serve()
    _local = threading.local()

    def log_message(self, fmt: str, *args: Any) -> None:  # route access logs to logging
        log.debug("%s %s", self.address_string(), fmt % args)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] = (),
               content_type: str | None = "application/json",
               head_length: str | None = None) -> None:
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        if self.command == "HEAD":
            self.send_header("Content-Length", head_length or "0")
        elif not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(body)

    def _control(self, path: str) -> None:
        relay = self.relay
        parsed = urllib.parse.urlsplit(path)
        route = parsed.path[len("/_relay/"):]
        if route == "health" and self.command == "GET":
            try:
                status, _ = relay.backend_request("GET", "/storage/v1/b?project=_", timeout=2)
            except OSError as exc:
                status = 0
                log.debug("backend not answering: %s", exc)
            body = {"ok": status == 200, "backend_status": status, **relay.snapshot()}
            self._reply(200 if status == 200 else 503, json.dumps(body).encode())
        elif route == "stats" and self.command == "GET":
            self._reply(200, json.dumps(relay.snapshot()).encode())
        elif route == "reset" and self.command == "POST":
            relay.reset()
            self._reply(200, json.dumps(relay.snapshot()).encode())
        elif route == "drain" and self.command == "POST":
            query = urllib.parse.parse_qs(parsed.query)
            ok = relay.drain(float(query.get("timeout", ["10"])[0]))
            self._reply(200 if ok else 504, json.dumps(relay.snapshot()).encode())
        else:
            self._reply(404, json.dumps({"error": f"no route {self.command} {path}"}).encode())

    def _proxy(self) -> None:
        if self.path.startswith("/_relay/"):
            self._control(self.path)
            return
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        relay = self.relay
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(relay.backend.hostname, relay.backend.port,
                                                  timeout=300)
                self._local.conn = conn
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()  # a stale keep-alive connection: retry once on a fresh one
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            self._local.conn = None
            msg = f"relay: fake-gcs-server at {relay.backend.geturl()} did not answer: {exc}"
            self._reply(502, json.dumps({"error": {"code": 502, "message": msg}}).encode())
            return
        path = urllib.parse.urlsplit(self.path).path
        obj = finalized_object(self.command, path, resp.status, data)
        if obj is None and self.command == "PUT" and 200 <= resp.status < 300 \
                and not _NOT_XML_API.match(path):
            obj = self._xml_api_object(path)
        if obj is not None:
            relay.accept(obj)  # journaled before the client hears of the success
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "content-type"]
        self._reply(resp.status, data, out_headers, resp.getheader("Content-Type"),
                    head_length=resp.getheader("Content-Length"))

    def _xml_api_object(self, path: str) -> dict[str, Any] | None:
        bucket, _, name = path.lstrip("/").partition("/")
        if not bucket or not name:
            return None
        meta = (f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
                f"{urllib.parse.quote(urllib.parse.unquote(name), safe='')}")
        status, body = self.relay.backend_request("GET", meta)
        return json.loads(body) if status == 200 else None

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy


def serve(listen: str, relay: Relay) -> ThreadingHTTPServer:
    """Start the proxy on ``host:port`` in a daemon thread and return the server."""
    host, _, port = listen.rpartition(":")
    handler = type("Handler", (_ProxyHandler,), {"relay": relay, "_local": threading.local()})
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="proxy", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeship.localcloud.relay",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port to serve the storage API on")
    parser.add_argument("--backend", required=True, help="fake-gcs-server URL, http://host:port")
    parser.add_argument("--function-url", required=True, help="where to POST the CloudEvents")
    parser.add_argument("--state-dir", required=True, type=Path, help="journal + delivered set")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--max-attempts", type=int, default=50)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(threadName)s: %(message)s",
                        datefmt="%H:%M:%S")
    relay = Relay(args.backend, args.function_url, args.state_dir, shards=args.shards,
                  max_attempts=args.max_attempts)
    relay.load()
    relay.start_workers()
    server = serve(args.listen, relay)
    log.info("relay listening on %s -> %s, events to %s", args.listen, args.backend,
             args.function_url)
    for _ in range(100):  # reconcile once the backend answers (it may start alongside us)
        try:
            relay.reconcile()
            break
        except (OSError, RuntimeError) as exc:
            log.debug("reconciliation waiting for the backend: %s", exc)
            time.sleep(0.1)
    else:
        log.warning("could not reconcile with %s; only proxied uploads will raise events",
                    args.backend)
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log.info("relay stopping; %s", relay.snapshot())
    relay.stop()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
