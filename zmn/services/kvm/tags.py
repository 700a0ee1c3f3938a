"""System tags a KVM host gets from its facts (``GET /v1/host/facts``), kept current by the
node at every connect: (pattern, facts key, pattern token)."""

from __future__ import annotations

from zmn.core.tags import TagPattern

CPU_MODEL = TagPattern("cpuModel::{model}", "Host", "CPU model libvirt reports (KVM host facts)")
CPU_MODEL_NAME = TagPattern(
    "cpuModelName::{name}", "Host", "CPU model name of the host (KVM host facts)"
)
LIBVIRT_VERSION = TagPattern(
    "libvirt::version::{version}", "Host", "libvirt version on the host (KVM host facts)"
)
QEMU_VERSION = TagPattern(
    "qemu::version::{version}", "Host", "QEMU version on the host (KVM host facts)"
)
DOMAIN_TYPE = TagPattern(
    "kvm::domainType::{type}", "Host", "kvm (hardware) or qemu (TCG): how the host runs VMs"
)

FACT_TAGS: list[tuple[TagPattern, str, str]] = [
    (CPU_MODEL, "cpuModel", "model"),
    (CPU_MODEL_NAME, "cpuModelName", "name"),
    (LIBVIRT_VERSION, "libvirtVersion", "version"),
    (QEMU_VERSION, "qemuVersion", "version"),
    (DOMAIN_TYPE, "domainType", "type"),
]
