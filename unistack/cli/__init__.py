"""The `unistack` command.

`main` parses the command line and dispatches to one module per concern: `statedir` (where
everything lives), `pki` (CA and serving certificate), `kubeconfig` (admin token and
kubeconfig), `supervisor` (keeps the control-plane processes running), `processes` (reading
/proc), `up`, `down`, `status`, `compact` and `serve` (the per-service entrypoints the
supervisor starts). `apicall` makes one authenticated HTTPS request to the API server. The CLI
sits on top of every other layer and is imported by none.
"""
