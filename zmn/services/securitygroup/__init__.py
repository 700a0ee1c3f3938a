"""Security groups: firewall rules for VM NICs, a plugin that hooks the VM lifecycle."""
