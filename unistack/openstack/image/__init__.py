"""Glance v2 over the image kinds and the OCI image store."""
