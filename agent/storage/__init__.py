"""Host storage: local directories holding qcow2 volumes made with ``qemu-img``."""
