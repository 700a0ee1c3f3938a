"""Built-in services, one folder each; every one is loaded through the ``zmn.services`` entry points."""
