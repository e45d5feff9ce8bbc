"""Receiver processes: each serves on 127.0.0.1, prints ``READY <port>``, runs until SIGTERM,
then prints ``COUNT <events decoded>`` so the harness can check no acknowledgement was
given for events the receiver did not decode.

    python bench/receivers.py aiohttp|native|framed|twistedweb [--reactor NAME] [--tls CERTDIR]

``native`` is our HttpInputFactory, ``framed`` our LumberjackInputFactory (what
``twistd logstash-input --protocol lumberjack --sink null`` runs), both into a null sink.
The two references do what a Python user would write: read the whole body, gunzip it
(isal), ``orjson.loads`` every line, answer ``200 ok``. Access logs are off everywhere.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import codec
import twisted_setup

KINDS = ("aiohttp", "native", "framed", "twistedweb")


def ready(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


def done(count: int) -> None:
    sys.stdout.write(f"COUNT {count}\n")
    sys.stdout.flush()


def decode(body: bytes, encoding: str | None) -> list[dict]:
    """The reference decoding (same function as the codec ceiling)."""
    if encoding == "gzip":
        return codec.decode_body(body)
    import orjson

    return [orjson.loads(line) for line in body.split(b"\n") if line]


# --- aiohttp -------------------------------------------------------------------------------


def serve_aiohttp(tls: str | None) -> None:
    import asyncio

    from aiohttp import web

    count = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.read()
        count += len(decode(body, request.headers.get("Content-Encoding")))
        return web.Response(text="ok", headers={"Accept": "application/x-ndjson"})

    async def main() -> None:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("POST", "/{tail:.*}", handle)
        # auto_decompress off: the body is gunzipped by the same isal call as everywhere else.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_server_ssl(tls))
        await site.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        ready(runner.addresses[0][1])
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    done(count)


def _server_ssl(tls: str | None):
    if tls is None:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(tls, "server.crt"), os.path.join(tls, "server.pkcs8.key"))
    return ctx


# --- Twisted receivers ----------------------------------------------------------------------


def twisted_endpoint(reactor, tls: str | None) -> tuple:
    """A server endpoint on 127.0.0.1, port chosen by the system; TLS through the project's
    own endpoint strings when they exist, else Twisted's ``ssl:`` endpoint."""
    from twisted.internet.endpoints import serverFromString

    if tls is None:
        return serverFromString(reactor, "tcp:0:interface=127.0.0.1"), "tcp"
    cert = os.path.join(tls, "server.crt")
    key = os.path.join(tls, "server.pkcs8.key")
    try:
        from twisted_logstash.security.endpoints import server_endpoint_string
    except ImportError:
        spec = f"ssl:0:interface=127.0.0.1:certKey={cert}:privateKey={key}"
        return serverFromString(reactor, spec), "twisted ssl:"
    settings = {"ssl_enabled": True, "ssl_certificate": cert, "ssl_key": key}
    spec = server_endpoint_string(settings, "127.0.0.1", 0)
    return serverFromString(reactor, spec), "twisted_logstash.security.endpoints"


def serve_twisted(kind: str, reactor_name: str, tls: str | None) -> None:
    name = twisted_setup.install_reactor(reactor_name)
    from twisted.internet import reactor

    twisted_setup.quiet_logs()
    if kind == "native":
        from twisted_logstash.wires.native.server import HttpInputFactory

        sink = null_sink()
        factory = HttpInputFactory(sink, reactor)

        def counted() -> int:
            return sink.count

    elif kind == "framed":
        from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

        sink = null_sink()
        factory = LumberjackInputFactory(sink, reactor)

        def counted() -> int:
            return sink.count

    else:
        factory, counted = _twistedweb_site()
    endpoint, how = twisted_endpoint(reactor, tls)

    def listening(port) -> None:
        sys.stderr.write(f"reactor {name}, endpoint {how}\n")
        ready(port.getHost().port)

    def failed(failure) -> None:
        sys.stderr.write(failure.getTraceback())
        reactor.stop()

    endpoint.listen(factory).addCallbacks(listening, failed)
    reactor.run()
    done(counted())


def null_sink():
    """The project's NullSink; until it exists, the same thing: count, fire at once."""
    try:
        from twisted_logstash.pipeline.sinks import NullSink
    except ImportError:
        from twisted.internet import defer
        from zope.interface import implementer

        from twisted_logstash.interfaces import IEventSink

        @implementer(IEventSink)
        class NullSink:
            def __init__(self) -> None:
                self.count = 0

            def deliver(self, events):
                self.count += len(events)
                return defer.succeed(None)

        sys.stderr.write("twisted_logstash.pipeline.sinks missing: using a local NullSink\n")
    return NullSink()


def _twistedweb_site():
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    count = 0

    class Receiver(Resource):
        isLeaf = True

        def render_POST(self, request) -> bytes:
            nonlocal count
            body = request.content.read()
            count += len(decode(body, request.getHeader("content-encoding")))
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"accept", b"application/x-ndjson")
            return b"ok"

    class QuietSite(Site):
        def log(self, request) -> None:
            """No access log (the aiohttp reference runs with access_log=None)."""

    return QuietSite(Receiver()), lambda: count


def profiled(run, path: str | None) -> None:
    """Run ``run()``, under cProfile when ``path`` is given (stats written there)."""
    if path is None:
        run()
        return
    import cProfile

    profile = cProfile.Profile()
    try:
        profile.runcall(run)
    finally:
        profile.dump_stats(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--profile", default=None, help="write cProfile stats to this file")
    parser.add_argument("--reactor", choices=twisted_setup.REACTORS, default="default")
    parser.add_argument("--tls", default=None, help="folder with server.crt, server.pkcs8.key")
    args = parser.parse_args()
    if args.kind == "aiohttp":
        profiled(lambda: serve_aiohttp(args.tls), args.profile)
    else:
        profiled(lambda: serve_twisted(args.kind, args.reactor, args.tls), args.profile)


if __name__ == "__main__":
    main()
