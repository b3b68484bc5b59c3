"""Pod networking through the Container Network Interface (CNI spec 1.0).

``plugin`` is the executable side (the ``unistack-cni`` console script: a bridge + host-local
IPAM plugin that a kubelet/containerd could run as well); ``invoke`` is the caller side the node
agent uses, the way libcni does; ``conflist`` reads and writes the on-disk network config.
Neither imports anything from unistack except ``unistack.dataplane``.
"""
