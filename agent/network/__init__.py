"""Host networking: bridges (ip), DHCP/DNS (dnsmasq), security groups and EIPs (nftables)."""
