"""The ``Host`` header: its syntax, and the DNS-rebinding rule of a server bound to loopback.

Job: one reading of ``Host`` for the whole server, so that the check that refuses foreign names
(``check_host``) and the memory upload URL built from ``Host`` (``routes.memory``) agree on what
a valid value is.

DNS rebinding: a web page on ``http://evil.test`` can make its own name resolve to 127.0.0.1 and
then read the mock's answers as same-origin. The browser still sends ``Host: evil.test``, so a
server bound to a loopback address answers only requests that name it by a loopback name
(RFC 9110 section 7.2 makes ``Host`` the target's name; RFC 6761 reserves ``localhost``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Optional, Tuple

from api import Forbidden, Request

__all__ = ["HOST_RE", "host_name", "is_loopback_name", "check_host"]

HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251})?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
"""A ``Host`` value this server accepts: a name, an IPv4 address or a bracketed IPv6 address,
and an optional port (RFC 9110 ``uri-host [ ":" port ]``, without percent-encoded names)."""


def host_name(value: str) -> Optional[str]:
    """The name in a ``Host`` value, lower-cased, without the port (an IPv6 address keeps its
    brackets: ``[::1]``); None if the value does not match ``HOST_RE``."""
    value = value.strip()
    if not HOST_RE.fullmatch(value):
        return None
    if value.startswith("["):
        return value[:value.index("]") + 1].lower()
    return value.rpartition(":")[0].lower() if ":" in value else value.lower()


@functools.lru_cache(maxsize=256)
def is_loopback_name(name: str) -> bool:
    """True for ``localhost`` and its subdomains (RFC 6761), 127.0.0.0/8 and ``[::1]``. Every
    request asks about the same few names, so recent answers are kept."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(request: Request, bound_host: str, allowed: Tuple[str, ...]) -> None:
    """Refuse a request whose ``Host`` does not name this server, when it listens on a
    loopback address (``bound_host``: ``127.0.0.1``, ``::1``, ``localhost``). Passes: no
    ``Host`` at all (HTTP/1.0 clients), a loopback name (``is_loopback_name``) with any port,
    a name in ``allowed`` (``--allowed-hosts``, lower case, without port), or any name when
    ``allowed`` holds ``*`` or the server listens on another address.

    Raises ``Forbidden`` naming the flag that accepts the name."""
    if "*" in allowed or not is_loopback_name(bound_host.lower()):
        return
    values = request.headers.get_all("Host") or ()
    if not values:
        return
    name = host_name(values[0]) if len(values) == 1 else None
    if name is not None and (is_loopback_name(name) or name in allowed):
        return
    shown = values[0][:100] if len(values) == 1 else "%d Host headers" % len(values)
    raise Forbidden("Host %r does not name this server, which listens on a loopback address: send "
                    "Host: localhost, 127.0.0.1 or [::1] (with the port), or start the server with "
                    "--allowed-hosts NAME to accept that name (a defence against DNS rebinding)." % shown)
