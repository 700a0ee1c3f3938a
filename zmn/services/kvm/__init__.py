"""The KVM host type: hosts running ``zagent`` over libvirt, deployed over SSH.

A plugin of its own (entry point ``kvm``): it registers a :class:`HostType` for ``KVM`` with
the host service and serves ``AddKvmHost``. Removing it leaves simulator hosts working.
"""
