"""The HAProxy agent-check responder: one line per TCP connection, then close.

HAProxy's ``agent-check`` connects to ``agent-port``, reads one line and
applies its words. The line is derived, at the moment of each connection,
from ``view.snapshot.role_at(clock.now())`` (it fails closed like
``/monitor``):

=========================  =====================================================
role                       reply
=========================  =====================================================
MASTER                     ``up ready``
DRAINING                   ``drain``
MAINTENANCE                ``maint``
STANDBY, UNKNOWN           ``down ready #ROLE=STANDBY node=n2 term=7 leader=n1``
=========================  =====================================================

``ready`` in the negative reply is deliberate. HAProxy clears a ``maint`` or
``drain`` only on ``ready``, and on leaving maint it resets the server's check
health to ``rise``; were ``ready`` sent only by a master, a node coming back
from maintenance would skip ``rise`` and be UP at once, possibly while the old
master still is. Sent while the node is negative, the reset is undone by the
next failing HTTP check before the node can lead.

Failure modes: a peer that vanishes mid-reply is ignored; a port already in
use makes :meth:`AgentCheckServer.start` raise ``OSError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app.clock import Clock
from app.probe.answer import agent_reply
from app.role import NodeView

log = logging.getLogger("vipmon.agent")

_DRAIN_PEER_SECONDS = 1.0


class AgentCheckServer:
    """An asyncio TCP server answering HAProxy's agent-check from the node's snapshot."""

    def __init__(self, view: NodeView, clock: Clock, host: str, port: int) -> None:
        self.view = view
        self.clock = clock
        self.host = host
        self.requested_port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0). Only after :meth:`start`."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the agent server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen on ``host:port``. Raises ``OSError`` if the port cannot be bound."""
        self._server = await asyncio.start_server(
            self._answer, self.host, self.requested_port, reuse_address=True
        )
        log.info("agent-check responder listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening and wait for the server to close. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = agent_reply(self.view.snapshot, self.clock.now())
        try:
            writer.write(line.encode("ascii", errors="replace"))
            await writer.drain()
            writer.write_eof()
            # Read what the peer sent (agent-send) so that closing does not reset
            # the connection before the peer has read our line.
            async with asyncio.timeout(_DRAIN_PEER_SECONDS):
                while await reader.read(4096):
                    pass
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
