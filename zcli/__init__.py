"""zcli: the command-line client of the management node.

Commands are generated from the API catalogue the node publishes (cached by its hash), so
the CLI never lists APIs, parameters or columns by hand. zcli imports only the API contract
(:mod:`zmn.api`) and :mod:`zmn.client`; rich and PyYAML are imported only when a table or
YAML is printed, so ``-o json`` and ``-q`` start fast.
"""
