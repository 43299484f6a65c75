"""uvicorn's httptools protocol, taught to answer probes and to resist bad clients.

F5's default send string is ``GET /\\r\\n``: a request line with no HTTP
version and no blank line after it, which the parser would wait on forever.
When a connection's first bytes are exactly such a line, it is read as
``GET / HTTP/1.0`` with no headers. Everything else goes to the parser as is.

A client may half-close its side once it has sent its request (``nc -N``,
``ncat``). Every complete request it sent is then answered, and the connection
closes after the last answer; a partial request line or head after them is
dropped. With nothing to answer, or when the request being read has not got
its whole body, the connection closes at once.

A request's head (request line and header lines, up to the blank line) may be
at most :data:`MAX_HEADER_BYTES`. The parser is fed at most that much at a
time. A head that grows past the limit gets ``431 Request Header Fields Too
Large`` and the connection is closed: the rest never reaches the parser, so a
client sending an endless header costs the event loop 16 KiB of parsing.
The count starts again for each request and is exact for a head that starts
a read, as on a kept-alive connection. A pipelined head that starts in the
same piece as the end of the previous request is counted from the next piece
on, so it may reach twice the limit before it is refused. Like uvicorn's own
400, the 431 is written at once: a pipelined answer still pending before it
is lost.

On a TLS connection every request's scope carries the ASGI TLS extension
(``scope["extensions"]["tls"]``) with the client certificate the handshake
verified, if any (see :mod:`app.http.tls`).

Every line the protocol logs (uvicorn's "Invalid HTTP request received." among
them) ends with the client's address and carries it as the ``client`` field.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.http.tls import peer_tls_extension

_ONE_LINE_REQUEST = re.compile(rb"(GET|HEAD|OPTIONS) (/\S*)\r?\n")

#: The most bytes a request's head may take, request line and blank line included.
MAX_HEADER_BYTES = 16 * 1024

_TOO_LARGE = b'{"detail":"request headers larger than %d bytes"}' % MAX_HEADER_BYTES


class _ClientLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn's logger for one connection: each line names the client."""

    @property
    def level(self) -> int:  # uvicorn reads it to skip its trace lines
        return int(self.logger.level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        client = self.extra["client"]  # type: ignore[index]
        kwargs["extra"] = {**kwargs.get("extra", {}), "client": client}
        return f"{msg} (client {client})", kwargs


class ProbeProtocol(HttpToolsProtocol):
    """An HTTP/1.x server protocol with the probe forms and limits above."""

    _first_data = True
    #: Bytes of the current request's head fed to the parser; None once the head is complete.
    _head_bytes: int | None = 0
    #: The ASGI TLS extension of this connection; None on plain TCP.
    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client is not None:
            host, port = self.client
            client_log = _ClientLog(
                logging.getLogger("uvicorn.error"), {"client": f"{host}:{port}"}
            )
            self.logger = client_log  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = peer_tls_extension(ssl_object)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]

    def data_received(self, data: bytes) -> None:
        if self._first_data:
            self._first_data = False
            match = _ONE_LINE_REQUEST.fullmatch(data)
            if match is not None:
                data = match.group(1) + b" " + match.group(2) + b" HTTP/1.0\r\n\r\n"
        while data:
            if self._head_bytes is None:
                piece, data = data[:MAX_HEADER_BYTES], data[MAX_HEADER_BYTES:]
            else:
                room = MAX_HEADER_BYTES - self._head_bytes
                if room <= 0:
                    self._send_431()
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0

    # uvicorn types this as returning None; asyncio reads a true result as "keep open".
    def eof_received(self) -> bool:  # type: ignore[override]
        """Keep the connection open for writing while complete requests await an answer.

        Returns False (and closes) when there is nothing left to answer, or when the
        last request's body is incomplete and never will be. Otherwise the last
        complete request closes the connection once answered.
        """
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.more_body:
            self.transport.close()
            return False
        cycle.keep_alive = False
        return True

    def _send_431(self) -> None:
        self.logger.warning("Request headers larger than %d bytes.", MAX_HEADER_BYTES)
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(_TOO_LARGE),
                b"connection: close\r\n",
                b"\r\n",
                _TOO_LARGE,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
