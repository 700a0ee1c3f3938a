"""zcli: the command-line client of the management node.

Commands are generated from the API catalogue the node publishes (cached by its hash), so
the CLI never lists APIs, parameters or columns by hand. zcli imports only the API contract
(:mod:`zmn.api`) and :mod:`zmn.client`, never the server's libraries (msgspec included: the
blocking client frames with :mod:`json`); rich is imported only for a table on a terminal
(or of cells it must measure) and PyYAML only for YAML. ``zcli __complete`` imports neither
the contract nor the client unless it must ask the node (see :mod:`zcli.words`).
"""
