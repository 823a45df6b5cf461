"""Plan steps: the vocabulary shared by the code that plans a response and the loop that runs it.

Job: name the three things a plan can ask of a connection (wait, write, close). A plan is an
iterator of these steps; ``pipes``, ``scenario`` and ``formats`` produce plans, ``http_handler``
frames them as HTTP bodies, and ``pacer`` executes them. The types have their own room so the
loop depends on nothing that knows about replies, SSE or Langbase.
"""

from __future__ import annotations

from typing import NamedTuple, Union

__all__ = ["Wait", "Write", "Close", "Step"]


class Wait(NamedTuple):
    """Plan step: wait ``seconds`` (float) before the next step. Any ``Wait``, even
    ``Wait(0)``, marks a write boundary: the writes before it leave in their own ``send``."""

    seconds: float


class Write(NamedTuple):
    """Plan step: write ``data`` (bytes) to the connection."""

    data: bytes


class Close(NamedTuple):
    """Plan step: end the connection now, after the bytes already written; the plan's
    later steps (an HTTP body's terminator among them) are never sent. ``reset`` true ends it
    with a TCP reset instead of a clean close."""

    reset: bool


Step = Union[Wait, Write, Close]
