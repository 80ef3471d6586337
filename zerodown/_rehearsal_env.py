"""What ``zerodown rehearse`` tells an instance through its environment (a leaf: the
middleware read it without importing the sessions)."""

from __future__ import annotations

import os

#: Set by the rehearsal for its run; production never has it.
TOKEN_VARIABLE = "ZERODOWN_REHEARSAL_TOKEN"
#: The instance's name, which its responses carry in SERVER_HEADER during a rehearsal
#: whose data plane adds no header of its own (kube-proxy is a NAT, not a proxy).
INSTANCE_VARIABLE = "ZERODOWN_REHEARSAL_INSTANCE"
SERVER_HEADER = "X-Zerodown-Server"


def instance_header() -> tuple[bytes, bytes] | None:
    """The header naming this instance, when a rehearsal (its token set) asks for one."""
    name = os.environ.get(INSTANCE_VARIABLE)
    if not name or not os.environ.get(TOKEN_VARIABLE):
        return None
    return SERVER_HEADER.lower().encode(), name.encode("latin-1", "replace")
