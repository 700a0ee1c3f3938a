"""ztui: a live Textual dashboard over the management node's message API.

The package is a client of the API only: it imports ``zmn.api`` and ``zmn.client``, never the
server's internals. Everything it shows (views, columns, joins, actions, capacity bars) is
derived from the API catalogue, so a new resource type appears without a change here.
"""
