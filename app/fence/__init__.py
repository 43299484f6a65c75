"""The kernel fence: only the lease holder accepts connections on the fenced ports.

:mod:`app.fence.kernel` talks to nftables through libnftables (no process per call),
:mod:`app.fence.rules` writes the table's text, and :mod:`app.fence.fence` holds the
permissions as leases in the kernel, each expiring on the kernel's own clock before
the node's lease deadline.
"""
