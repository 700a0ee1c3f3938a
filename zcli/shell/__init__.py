"""``zcli shell``: the interactive shell (prompt-toolkit), its completer, history and names.

Importing this package imports nothing heavy: :mod:`zcli.shell.namecache` is also used by
``zcli __complete``, which must start fast; prompt-toolkit is imported by :mod:`.app` only.
"""
