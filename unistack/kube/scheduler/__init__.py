"""The scheduler: assigns pending Pods to Nodes through the `binding` subresource.

`filters` (which nodes can run a pod, and why not) and `scoring` (which of those is best) are
pure; `scheduler` decides with them and acts (binding, the PodScheduled condition, Events).
`resources` reads requests and allocatable quantities.
"""
