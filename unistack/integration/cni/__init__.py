"""Pod networking through the Container Network Interface (CNI spec 1.0).

``plugin`` is the executable side (the ``unistack-cni`` console script: a bridge + host-local
IPAM plugin that a kubelet/containerd could run as well). ``delegate`` is the thin
``unistack-cni`` the node agent installs for itself: it hands each call over a unix socket to
``server``, which runs ``plugin`` inside the agent process (and runs it itself when no agent
listens). The caller side the agent uses, the way libcni does, is ``unistack.dataplane.cni``,
and ``unistack.dataplane.cniconf`` reads and writes the on-disk config and installs the thin
plugin. Nothing here imports anything from unistack except ``unistack.dataplane``.
"""
