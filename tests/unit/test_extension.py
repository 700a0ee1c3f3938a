"""The extension registry: every implementation of a point, or the one for a type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from zmn.core.extension import ExtensionRegistry


class Backend(Protocol):
    hypervisor_type: str


@dataclass
class Impl:
    hypervisor_type: str
    primary_storage_type: str = "LocalStorage"


def test_first_picks_by_attributes_in_registration_order() -> None:
    reg = ExtensionRegistry()
    kvm, sim, kvm_nfs = Impl("KVM"), Impl("Simulator"), Impl("KVM", "NFS")
    for impl in (kvm, sim, kvm_nfs):
        reg.add(Backend, impl)
    assert reg.first(Backend, hypervisor_type="Simulator") is sim
    assert reg.first(Backend, hypervisor_type="KVM") is kvm
    assert reg.first(Backend, hypervisor_type="KVM", primary_storage_type="NFS") is kvm_nfs
    assert reg.first(Backend, hypervisor_type="Xen") is None
    assert reg.first(Backend, no_such_attribute="KVM") is None


def test_first_of_a_point_nobody_implements_is_none() -> None:
    assert ExtensionRegistry().first(Backend, hypervisor_type="KVM") is None
