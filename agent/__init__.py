"""zagent: the host agent. Drives libvirt, bridges, dnsmasq and nftables on a hypervisor host
for the management node, over signed HTTP(S)+JSON (see :mod:`zmn.api.agentauth`).

It imports only the API contract (``zmn.api``) and never the node's internals.
"""

__version__ = "0.1.0"
