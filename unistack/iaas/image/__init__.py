"""The image service's kinds (Glance v2's images)."""
