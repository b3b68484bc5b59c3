"""The controller runtime: client-go's controller pattern in asyncio.

Modules: `informer` (list + watch of one kind into a read-only cache, with event handlers),
`workqueue` (keyed, deduplicating, rate-limited queue), `controller` (workers running a reconcile
function off a queue, and helpers routing informer events to keys), `leader` (leader election
on a Lease). Built on `unistack.client`; the controllers in `unistack.kube` and `unistack.iaas`
build on it.
"""
