"""Hypervisor drivers: the interface (base), libvirt, and an in-memory fake for tests."""
