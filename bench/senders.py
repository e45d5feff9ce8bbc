"""Sender processes: each sends the workload's events into one receiver for the windows.

    python bench/senders.py aiohttp|transmitter|output|output-framed|agent --port P ...

Every sender starts from the same event dicts (``workload.make_batches()``) and encodes each
batch itself, every time, as a real sender must: compact JSON per line, gzip level 1 (isal,
as the project's own codec does). Only batches answered 2xx count. The references:
- ``aiohttp``: an aiohttp ``ClientSession``, ``--in-flight`` requests outstanding;
- ``agent``: ``twisted.web.client.Agent`` over a persistent ``HTTPConnectionPool``.
Ours: ``transmitter`` drives ``HttpTransmitter.encode``/``transmit`` directly with the same
concurrency; ``output`` calls ``Output.send()`` (batch 125, max_in_flight 4) and counts the
events of every send whose Deferred fired. ``output-framed`` is the same Output over the
framed wire (``LumberjackTransmitter``, zlib level 3 as the Beats): its sender rows send into
the C program's cheap ACKing receiver (``cloadgen serve-framed``) or into our framed input.
"""

from __future__ import annotations

import argparse
import sys

import measure
import orjson
import twisted_setup
import workload
from isal import isal_zlib

KINDS = ("aiohttp", "transmitter", "output", "output-framed", "agent")
HEADERS = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


def reference_encode(events: list[dict]) -> bytes:
    """What a careful Python sender writes: orjson per event, isal gzip level 1."""
    dumps = orjson.dumps
    body = b"".join([dumps(e) + b"\n" for e in events])
    return isal_zlib.compress(body, level=1, wbits=31)


def result(windows: measure.Windows, counter: measure.Counter, info: dict) -> dict:
    return {
        "windows": windows.report(),
        "acked_total": counter.events,
        "requests": counter.requests,
        "refused": counter.statuses,
        "errors": counter.errors,
        "digest": workload.digest(workload.make_bodies()),
        "info": info,
    }


# --- aiohttp ---------------------------------------------------------------------------------


def run_aiohttp(args) -> dict:
    import asyncio

    import aiohttp

    batches = workload.make_batches()
    url = f"http://127.0.0.1:{args.port}/"

    async def main() -> dict:
        counter = measure.Counter()
        windows = measure.Windows(counter, args.peer_pid)
        running = True

        async def worker(session: aiohttp.ClientSession, start: int) -> None:
            i = start
            while running:
                batch = batches[i % len(batches)]
                i += args.in_flight
                try:
                    body = reference_encode(batch)
                    async with session.post(url, data=body, headers=HEADERS) as resp:
                        await resp.read()
                        if 200 <= resp.status < 300:
                            counter.acked(len(batch))
                        else:
                            counter.refused(resp.status)
                except (aiohttp.ClientError, OSError) as e:
                    counter.failed(e)
                    await asyncio.sleep(0.01)

        connector = aiohttp.TCPConnector(limit=args.in_flight)
        async with aiohttp.ClientSession(
            connector=connector, skip_auto_headers=("User-Agent",)
        ) as session:
            tasks = [asyncio.create_task(worker(session, n)) for n in range(args.in_flight)]
            windows.mark()
            for delay in measure.schedule(args.warmup, args.window, args.repeats):
                await asyncio.sleep(delay)
                windows.mark()
            running = False
            await asyncio.gather(*tasks)
        return result(windows, counter, {"client": f"aiohttp {aiohttp.__version__}"})

    return asyncio.run(main())


# --- Twisted senders ---------------------------------------------------------------------------


class _Loop:
    """Keeps ``in_flight`` sends outstanding until told to stop, then waits for them."""

    def __init__(self, reactor, send, in_flight: int, counter: measure.Counter) -> None:
        from twisted.internet import defer

        self.reactor = reactor
        self.send = send  # send(index) -> Deferred firing with the number of events acked
        self.counter = counter
        self.running = True
        self.finished = defer.DeferredList(
            [self._worker(n, in_flight) for n in range(in_flight)], consumeErrors=True
        )

    def _worker(self, start: int, step: int):
        from twisted.internet import defer, task

        @defer.inlineCallbacks
        def loop():
            i = start
            while self.running:
                try:
                    count = yield self.send(i)
                except Exception as e:  # every failure is tallied and reported
                    status = getattr(e, "status", None)
                    if status is not None:
                        self.counter.refused(status)
                    else:
                        self.counter.failed(e)
                    yield task.deferLater(self.reactor, 0.01, lambda: None)
                else:
                    self.counter.acked(count)
                i += step

        return loop()


def run_twisted(args) -> dict:
    reactor_name = twisted_setup.install_reactor(args.reactor)
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint

    twisted_setup.quiet_logs()
    batches = workload.make_batches()
    counter = measure.Counter()
    windows = measure.Windows(counter, args.peer_pid)
    info = {"reactor": reactor_name}
    out: dict = {}

    def endpoint_factory(host):
        return TCP4ClientEndpoint(reactor, host.host, host.port)

    send, close, state = _SETUPS[args.kind](reactor, endpoint_factory, args, batches, info)
    watchdog = _Watchdog(reactor, counter, state, info)

    @defer.inlineCallbacks
    def drive():
        loop = _Loop(reactor, send, _outstanding(args), counter)
        watchdog.start()
        windows.mark()
        for delay in measure.schedule(args.warmup, args.window, args.repeats):
            yield task.deferLater(reactor, delay, lambda: None)
            windows.mark()
        loop.running = False
        try:
            yield loop.finished.addTimeout(END_TIMEOUT, reactor)
            yield defer.maybeDeferred(close).addTimeout(END_TIMEOUT, reactor)
        except defer.TimeoutError:
            counter.failed(StuckAtEnd())
            info["stuck_at_end"] = state()
        watchdog.stop()
        out.update(result(windows, counter, info))

    def stop(outcome):
        if isinstance(outcome, Exception) or hasattr(outcome, "getTraceback"):
            sys.stderr.write(outcome.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(lambda: drive().addBoth(stop))
    reactor.run()
    return out


END_TIMEOUT = 10.0
STALL_AFTER = 5.0


class StuckAtEnd(Exception):
    """Sends still outstanding, or close() not done, long after the last window."""


class Stalled(Exception):
    """No event acknowledged for STALL_AFTER seconds while sending."""


class _Watchdog:
    """Notes, with the sender's state, every stretch of STALL_AFTER seconds without an ack:
    a stall is a finding to report, not a slow figure to average away."""

    def __init__(self, reactor, counter: measure.Counter, state, info: dict) -> None:
        from twisted.internet import task

        self.reactor = reactor
        self.counter = counter
        self.state = state
        self.info = info
        self.last = (-1, 0.0)
        self.stalled = False
        self.call = task.LoopingCall(self.check)
        self.call.clock = reactor

    def start(self) -> None:
        self.last = (self.counter.events, self.reactor.seconds())
        self.call.start(0.5, now=False)

    def stop(self) -> None:
        if self.call.running:
            self.call.stop()

    def check(self) -> None:
        now = self.reactor.seconds()
        if self.counter.events != self.last[0]:
            self.last = (self.counter.events, now)
            self.stalled = False
        elif not self.stalled and now - self.last[1] >= STALL_AFTER:
            self.stalled = True
            self.counter.failed(Stalled())
            snapshot = {"acked": self.counter.events, **self.state()}
            self.info.setdefault("stalls", []).append(snapshot)
            sys.stderr.write(f"stalled: {snapshot}\n")


def _outstanding(args) -> int:
    """How many sends the loop keeps outstanding: the in-flight limit for the transports; for
    the Output twice that, so that its queue always holds a next batch (its own
    max_in_flight=4 is what limits the requests)."""
    return args.in_flight * 2 if args.kind.startswith("output") else args.in_flight


def _setup_transmitter(reactor, endpoint_factory, args, batches, info):
    from twisted_logstash.transport.hosts import Host
    from twisted_logstash.wires.native.client import HttpTransmitter

    host = Host("127.0.0.1", args.port)
    transmitter = HttpTransmitter(reactor, endpoint_factory, compression="gzip")
    info["client"] = "twisted_logstash.wires.native.client.HttpTransmitter"

    def send(i: int):
        batch = batches[i % len(batches)]
        payload = transmitter.encode(batch)
        return transmitter.transmit(host, payload).addCallback(lambda _: len(batch))

    def state() -> dict:
        return {"idle_connections": transmitter.idle_connections(host)}

    return send, transmitter.close, state


def _setup_output(reactor, endpoint_factory, args, batches, info):
    from twisted_logstash.pipeline.output import Output
    from twisted_logstash.transport.hosts import Host

    if args.kind == "output-framed":
        from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter

        transmitter = LumberjackTransmitter(reactor, endpoint_factory)
        over = "LumberjackTransmitter"
    else:
        from twisted_logstash.wires.native.client import HttpTransmitter

        transmitter = HttpTransmitter(reactor, endpoint_factory, compression="gzip")
        over = "HttpTransmitter"
    host = Host("127.0.0.1", args.port)
    output = Output(
        transmitter,
        [host],
        reactor,
        batch_size=workload.BATCH_SIZE,
        max_in_flight=args.in_flight,
    )
    output.startService()
    info["client"] = f"twisted_logstash.pipeline.output.Output over {over}"

    def send(i: int):
        batch = batches[i % len(batches)]
        return output.send(batch).addCallback(lambda _: len(batch))

    def close():
        d = output.stopService()
        return d.addCallback(lambda left: info.update(left_unacknowledged=left))

    def state() -> dict:
        return {
            "pending": output.pending(),
            "in_flight": output.in_flight,
            "idle_connections": getattr(transmitter, "idle_connections", lambda _: None)(host),
        }

    return send, close, state


def _setup_agent(reactor, endpoint_factory, args, batches, info):
    from twisted.internet import defer
    from twisted.web.client import Agent, HTTPConnectionPool, readBody
    from twisted.web.http_headers import Headers
    from twisted.web.iweb import IBodyProducer
    from zope.interface import implementer

    @implementer(IBodyProducer)
    class BytesProducer:
        """The whole body in one write (FileBodyProducer would cut it in 64 KiB steps)."""

        def __init__(self, body: bytes) -> None:
            self.body = body
            self.length = len(body)

        def startProducing(self, consumer):
            consumer.write(self.body)
            return defer.succeed(None)

        def pauseProducing(self):
            pass

        def stopProducing(self):
            pass

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.in_flight
    agent = Agent(reactor, pool=pool)
    url = f"http://127.0.0.1:{args.port}/".encode()
    headers = Headers({b"content-type": [b"application/x-ndjson"], b"content-encoding": [b"gzip"]})
    info["client"] = "twisted.web.client.Agent + HTTPConnectionPool"

    class Refused(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    @defer.inlineCallbacks
    def send(i: int):
        batch = batches[i % len(batches)]
        body = reference_encode(batch)
        response = yield agent.request(b"POST", url, headers, BytesProducer(body))
        yield readBody(response)
        if not 200 <= response.code < 300:
            raise Refused(response.code)
        return len(batch)

    return send, pool.closeCachedConnections, dict


_SETUPS = {
    "transmitter": _setup_transmitter,
    "output": _setup_output,
    "output-framed": _setup_output,
    "agent": _setup_agent,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--reactor", choices=twisted_setup.REACTORS, default="default")
    measure.client_args(parser)
    args = parser.parse_args()
    if args.kind == "aiohttp":
        measure.emit(run_aiohttp(args))
    else:
        measure.emit(run_twisted(args))


if __name__ == "__main__":
    main()
