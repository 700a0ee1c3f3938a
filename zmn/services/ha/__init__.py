"""VM HA: restart ``ha::NeverStop`` VMs of a dead KVM host on another host (docs/ha.md)."""
