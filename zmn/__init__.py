"""zmn: the management node of a terminal-first IaaS cloud manager."""

__version__ = "0.1.0"
