"""A cuttable TCP forwarder, run as its own plain process by tests.support.TcpProxy.

Usage: python tests/tcpproxy.py HOST PORT; prints the port it listens on, then obeys lines on
stdin: `cut` (close every connection, refuse new ones) and `restore`, echoing each when done.
Ends when stdin closes."""

from __future__ import annotations

import sys
from typing import Any


class Forwarder:
    """Forwards 127.0.0.1:<port> to the target; cut() drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int):
        import socket
        import threading

        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = int(self.listener.getsockname()[1])
        self.up = True
        self.closed = False
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                # A cut() while this connection was being opened must drop it too.
                if not self.up:
                    client.close()
                    upstream.close()
                    continue
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        import socket

        with self._lock:
            self.up = False
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def main() -> None:
    fwd = Forwarder(sys.argv[1], int(sys.argv[2]))
    print(fwd.port, flush=True)
    for line in sys.stdin:
        word = line.strip()
        if word == "cut":
            fwd.cut()
        elif word == "restore":
            fwd.restore()
        print(word, flush=True)
    fwd.close()


if __name__ == "__main__":
    main()
