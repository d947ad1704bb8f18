"""Local Redis servers for the tests: a 3-master Redis Cluster on free ports (`redis-server
--cluster-enabled yes`), started and stopped by the test set-up. Needs redis-server and redis-cli
(Debian's redis-server package; scripts/ensure-redis.sh installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Three masters, no replicas, in a temporary directory; `url` is the gateway's redis+cluster:// URL."""

    def __init__(self, masters: int = 3) -> None:
        if not shutil.which("redis-server") or not shutil.which("redis-cli"):
            raise RuntimeError("redis-server/redis-cli not installed (scripts/ensure-redis.sh installs them)")
        self.dir = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen] = []
        for _ in range(masters):
            port = free_port()  # cluster bus: port + 10000, must be free too
            while port + 10000 > 65535:
                port = free_port()
            self.ports.append(port)
            node = self.dir / str(port)
            node.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        try:
            self._create()
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _cli(self, port: int, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30).stdout

    def _create(self) -> None:
        deadline = time.monotonic() + 20
        while any("PONG" not in self._cli(p, "ping") for p in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster's nodes did not start")
            time.sleep(0.1)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        while any("cluster_state:ok" not in self._cli(p, "cluster", "info") for p in self.ports):
            if time.monotonic() > deadline + 30:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class DelayProxy:
    """A TCP proxy in front of a Redis that delays every reply by `delay_s` (a slow or distant Redis);
    `connections` counts the connections clients opened through it."""

    def __init__(self, target_port: int, delay_s: float = 0.03, host: str = "127.0.0.1") -> None:
        import asyncio
        import threading

        self.target = (host, target_port)
        self.delay_s = delay_s
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    async def _client(self, reader, writer) -> None:
        import asyncio

        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def forward(src, dst, delay_s: float) -> None:
            loop = asyncio.get_running_loop()
            try:
                while data := await src.read(65536):
                    if delay_s:  # each reply arrives delay_s after Redis sent it, in order
                        due = loop.time() + delay_s
                        loop.call_at(due, dst.write, data)
                    else:
                        dst.write(data)
            except (ConnectionError, OSError):
                pass
            finally:
                loop.call_later(delay_s, dst.close)

        await asyncio.gather(forward(reader, up_writer, 0.0), forward(up_reader, writer, self.delay_s))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/15"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
