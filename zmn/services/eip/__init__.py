"""Virtual IPs and elastic IPs: a public address (VIP) mapped onto a VM NIC (EIP)."""
