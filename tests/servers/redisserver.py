"""Real Redis for tests: Debian's ``redis-server`` on 127.0.0.1, started from a
config file in a temp dir (no persistence), and a 3-master Redis Cluster
built from three of them with ``redis-cli --cluster create``.  Always stopped
by the caller (they are context managers); a missing binary fails loudly."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

START_WAIT_S = 60.0


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run `make test`, which installs redis-server and redis-tools")
    return path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port P with P and P + 10000 free (Redis Cluster's bus is on P + 10000)."""
    for _ in range(200):
        p = random.randint(20000, 29999)
        if _free(p) and _free(p + 10000):
            return p
    raise RuntimeError("no free pair of ports")


@dataclass(frozen=True)
class TLSFiles:
    """The server's certificate and key, the CA clients are checked against, and
    (for the admin client) a client certificate: given, the server requires one."""

    cert: Path
    key: Path
    ca: Path
    client_cert: Path | None = None
    client_key: Path | None = None


class RedisServer:
    """One ``redis-server``.  ``users``: ACL lines (``"alice on >pw ~trolleyfs:* +@all"``);
    ``admin_password``: the default user's password (else it has none)."""

    def __init__(
        self,
        users: tuple[str, ...] = (),
        admin_password: str | None = None,
        tls: TLSFiles | None = None,
        cluster: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port_pair()
        self.dir = Path(tempfile.mkdtemp(prefix="trolleyfs-redis-"))
        self.admin_password = admin_password
        self.tls = tls
        self.cluster = cluster
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            'save ""',
            "appendonly no",
            f"dir {self.dir}",
            f"logfile {self.dir / 'redis.log'}",
            "daemonize no",
        ]
        if tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {tls.cert}",
                f"tls-key-file {tls.key}",
                f"tls-ca-cert-file {tls.ca}",
                f"tls-auth-clients {'yes' if tls.client_cert else 'no'}",
            ]
        else:
            lines.append(f"port {self.port}")
        if cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 3000"]
        if admin_password:
            lines.append(f"user default on >{admin_password} ~* &* +@all")
        lines += [f"user {u}" for u in users]
        lines += list(extra)
        (self.dir / "redis.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        p = self.dir / "redis.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def admin(self) -> redis.Redis:
        opts: dict[str, Any] = {"password": self.admin_password, "socket_timeout": 10}
        if self.tls:
            opts |= {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca),
                "ssl_certfile": self.tls.client_cert,
                "ssl_keyfile": self.tls.client_key,
            }
        return redis.Redis(host="127.0.0.1", port=self.port, **opts)

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [need("redis-server"), str(self.dir / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_WAIT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with self.admin() as c:
                    if c.ping():
                        return self
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {START_WAIT_S:.0f} s for redis-server on port {self.port}:\n{self.log()}")
            time.sleep(0.05)

    def pause(self) -> None:
        """Stop answering (SIGSTOP), like a Redis that hangs; :meth:`resume` undoes it."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class RedisClusterServers:
    """Three masters, no replicas, joined with ``redis-cli --cluster create``
    (as the default user, which has no password; ``users``: ACL lines on every node)."""

    def __init__(self, masters: int = 3, users: tuple[str, ...] = ()) -> None:
        self.nodes = [RedisServer(cluster=True, users=users) for _ in range(masters)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def admin(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes], socket_timeout=10)

    def start(self) -> RedisClusterServers:
        for n in self.nodes:
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(
            [need("redis-cli"), "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
        deadline = time.monotonic() + START_WAIT_S
        while not all(self._ok(n) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("waited for the Redis Cluster to be ok:\n" + "\n".join(n.log() for n in self.nodes))
            time.sleep(0.1)
        return self

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        with node.admin() as c:
            info = c.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def flush(self) -> None:
        for n in self.nodes:
            with n.admin() as c:
                c.flushall()

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
