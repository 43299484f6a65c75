"""uvicorn's httptools protocol, taught to answer one-line probe requests.

F5's default send string is ``GET /\\r\\n``: a request line with no HTTP
version and no blank line after it, which the parser would wait on forever.
When a connection's first bytes are exactly such a line, it is read as
``GET / HTTP/1.0`` with no headers. Everything else goes to the parser as is.
"""

from __future__ import annotations

import re

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_ONE_LINE_REQUEST = re.compile(rb"(GET|HEAD|OPTIONS) (/\S*)\r?\n")


class ProbeProtocol(HttpToolsProtocol):
    """An HTTP/1.x server protocol that also accepts a bare ``GET /path`` line."""

    _first_data = True

    def data_received(self, data: bytes) -> None:
        if self._first_data:
            self._first_data = False
            match = _ONE_LINE_REQUEST.fullmatch(data)
            if match is not None:
                data = match.group(1) + b" " + match.group(2) + b" HTTP/1.0\r\n\r\n"
        super().data_received(data)
