"""A TCP proxy that adds network latency: every chunk of bytes, in each direction, is forwarded
`latency / 2` seconds after it arrived, so a request/response round trip gains `latency`.

Why: in production Herald publishes from Lambda to AWS IoT Core's data endpoint, a network hop
away (a few to tens of milliseconds), while locally the emulator answers over loopback in well under
a millisecond. A publisher that sends one request at a time looks fine on loopback and is bounded
by 1 / round trip in production; putting this proxy between the publisher and the emulator's HTTP
Publish port shows that locally.

How: per connection and direction, a reader stamps each chunk with its due time (arrival + delay)
and queues it; a forwarder takes chunks in order and sleeps only until each one's due time. Chunks
that arrive close together leave close together (the delay is added once, not once per chunk
queued ahead), and byte order per direction is kept. An end of stream is forwarded the same way,
as a half-close (the other direction keeps flowing); a reset or error on either side aborts both
sides. Queues are not bounded: this is a benchmark tool for well-behaved local peers.

As a script, in its own process (so its CPU does not compete with the measured process's GIL):

    python bench/latency_proxy.py --listen 0 --upstream 127.0.0.1:8084 --latency-ms 10

prints `listening on 127.0.0.1:PORT` once it accepts connections, and runs until SIGINT/SIGTERM.
As a module, in a background thread of the calling process:

    proxy = LatencyProxy("127.0.0.1", 8084, latency=0.010)
    port = proxy.start()
    ...
    proxy.stop()
"""
import argparse
import asyncio
import signal
import sys
import threading

CHUNK = 64 * 1024
_EOF = object()  # the reader saw the end of the stream: half-close the other side
_RESET = object()  # the reader saw an error: abort both sides


class LatencyProxy:
    """Listens on listen_host:listen_port (0: a free port) and forwards to upstream with latency."""

    def __init__(self, upstream_host: str, upstream_port: int, *, latency: float,
                 listen_host: str = "127.0.0.1", listen_port: int = 0):
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.upstream = (upstream_host, upstream_port)
        self.delay = latency / 2  # one way
        self.listen = (listen_host, listen_port)
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- asyncio API ---------------------------------------------------------------------------

    async def open(self) -> int:
        """Start listening in the running loop; returns the bound port."""
        self._server = await asyncio.start_server(self._accept, *self.listen, limit=CHUNK, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and abort every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream, limit=CHUNK)
            except OSError:
                client_w.transport.abort()
                return
            writers = (client_w, up_w)
            clean = [False]
            try:
                # Each pipe returns True on a clean end of stream, False after a reset or error.
                clean = await asyncio.gather(self._pipe(client_r, up_w, writers), self._pipe(up_r, client_w, writers))
            finally:
                for w in writers:
                    if all(clean):
                        w.close()
                    else:
                        w.transport.abort()
        except asyncio.CancelledError:
            client_w.transport.abort()
        finally:
            self._connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, both) -> bool:
        """One direction: a reader that stamps and queues chunks, a forwarder that sends them when due."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def read():
            while True:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    data = _RESET
                queue.put_nowait((loop.time() + self.delay, data or _EOF))
                if not isinstance(data, bytes) or not data:
                    return

        reading = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is _RESET:
                    for w in both:
                        w.transport.abort()
                    return False
                if data is _EOF:
                    if writer.can_write_eof() and not writer.is_closing():
                        try:
                            writer.write_eof()
                        except OSError:
                            return False
                    return True
                try:
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError):
                    for w in both:
                        w.transport.abort()
                    return False
        finally:
            reading.cancel()

    # -- background thread -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> int:
        """Run the proxy on its own event loop in a daemon thread; returns the bound port."""
        started = threading.Event()
        errors: list[BaseException] = []

        async def main():
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.open()
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                started.set()
                return
            started.set()
            await self._stopped.wait()
            await self.close()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="latency-proxy", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("the latency proxy did not start in time")
        if errors:
            raise errors[0]
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:  # the loop already ended
                pass
        self._thread.join(timeout)
        self._thread = None


def parse_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(proxy: LatencyProxy) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    port = await proxy.open()
    print(f"listening on {proxy.listen[0]}:{port}", flush=True)
    await stop.wait()
    await proxy.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="0", help="PORT or HOST:PORT to listen on (port 0: a free one)")
    parser.add_argument("--upstream", type=parse_hostport, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--latency-ms", type=float, required=True, help="round-trip latency to add")
    args = parser.parse_args()
    listen = parse_hostport(args.listen if ":" in args.listen else f"127.0.0.1:{args.listen}")
    proxy = LatencyProxy(*args.upstream, latency=args.latency_ms / 1000, listen_host=listen[0], listen_port=listen[1])
    try:
        asyncio.run(serve(proxy))
    except OSError as exc:
        sys.exit(f"latency proxy: {exc}")


if __name__ == "__main__":
    main()
