"""The embedded Kubernetes: controllers (garbage collector, namespace, and later the workload
controllers and scheduler) and the node agent, all written on `unistack.runtime` and talking to
the API only through `unistack.client`. `main.run_controllers` is the entrypoint of
`unistack serve controllers`.
"""
