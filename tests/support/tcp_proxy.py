"""A TCP forwarder a test can cut or mute, to take a real service away without stopping it.

``down()`` closes the listener and every forwarded connection (clients get "connection
refused" / resets), ``up()`` listens again on the same port, ``mute = True`` accepts
connections and never answers (a hung server: clients time out). ``hang()`` mutes new
connections and stops moving bytes on the forwarded ones too (held, not dropped: a server that
stopped answering mid-conversation); ``resume()`` delivers what was held and goes on.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> (a free port) to ``upstream``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mute = False
        self._flowing = threading.Event()
        self._flowing.set()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._acceptor = threading.Thread()
        self._open: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def hang(self) -> None:
        self.mute = True
        self._flowing.clear()

    def resume(self) -> None:
        self.mute = False
        self._flowing.set()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._acceptor.join(timeout=5)  # a blocked accept() holds the port until it returns
            listener.close()
        for sock in self._open:
            _close(sock)
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._open.append(client)
            if not self.mute:
                try:
                    upstream = socket.create_connection(self.upstream)
                except OSError:
                    _close(client)
                    continue
                self._open.append(upstream)
                for src, dst in ((client, upstream), (upstream, client)):
                    args = (src, dst, self._flowing)
                    threading.Thread(target=_pump, args=args, daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
    try:
        while data := src.recv(65536):
            flowing.wait()  # hung: hold what arrived until resumed
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
