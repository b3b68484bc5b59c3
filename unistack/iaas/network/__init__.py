"""The network service (Neutron v2.0): kinds, IPAM, MAC addresses and the public network."""
