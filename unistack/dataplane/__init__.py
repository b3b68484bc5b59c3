"""The data plane: real Linux drivers behind small Protocols.

Each module drives one kernel facility (network namespaces, bridges and veths, nftables,
routes) by exec'ing iproute2/nftables and owns nothing else; IP address management keeps its
reservations on disk. Nothing here imports the rest of unistack, so the CNI plugin can load it
in a few milliseconds.
"""
