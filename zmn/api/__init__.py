"""The API contract: errors, wire framing, message definitions, the query language.

Clients (zcli, tui, agent, scripts) import only this package and :mod:`zmn.client`.
"""
