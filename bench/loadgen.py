"""The Python load generator: aiohttp posting the pre-built gzip ndjson bodies.

The receiver rows run under the C load generator (bench/cloadgen.c), which costs a few % of a
core where this one takes most of one; this one drives the native rows when gcc is missing,
or with ``bench/run.py --python-loadgen`` (to compare the two).

``--in-flight`` requests are outstanding at all times, over as many keep-alive connections;
an event counts only when its batch was answered ``200``. Any other answer is tallied by
status and reported; an error (reset, refused) is tallied by type.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

import aiohttp
import measure
import workload

HEADERS = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


async def generate(args) -> dict:
    bodies = workload.make_bodies()
    per_batch = workload.BATCH_SIZE
    scheme = "https" if args.cafile else "http"
    url = f"{scheme}://127.0.0.1:{args.port}/"
    ssl_ctx = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    counter = measure.Counter()
    windows = measure.Windows(counter, args.peer_pid)
    running = True

    async def worker(session: aiohttp.ClientSession, start: int) -> None:
        i = start
        while running:
            body = bodies[i % len(bodies)]
            i += args.in_flight
            try:
                async with session.post(url, data=body, headers=HEADERS, ssl=ssl_ctx) as resp:
                    await resp.read()
                    if resp.status == 200:
                        counter.acked(per_batch)
                    else:
                        counter.refused(resp.status)
            except (aiohttp.ClientError, OSError) as e:
                counter.failed(e)
                await asyncio.sleep(0.01)

    connector = aiohttp.TCPConnector(limit=args.in_flight, force_close=False)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as s:
        tasks = [asyncio.create_task(worker(s, n)) for n in range(args.in_flight)]
        windows.mark()
        for delay in measure.schedule(args.warmup, args.window, args.repeats):
            await asyncio.sleep(delay)
            windows.mark()
        running = False
        await asyncio.gather(*tasks)
    return {
        "windows": windows.report(),
        "acked_total": counter.events,
        "requests": counter.requests,
        "refused": counter.statuses,
        "errors": counter.errors,
        "digest": workload.digest(bodies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    measure.client_args(parser)
    args = parser.parse_args()
    measure.emit(asyncio.run(generate(args)))


if __name__ == "__main__":
    main()
