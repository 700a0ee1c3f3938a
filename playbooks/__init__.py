"""Agent deployment recipes (``kvm-agent.yaml`` and ``files/``), installed with the node as data."""
