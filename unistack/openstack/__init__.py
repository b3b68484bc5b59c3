"""OpenStack-compatible REST facades, one subpackage per service, and the gateway that serves
them under one port with DevStack's paths and builds the catalog (DESIGN.md section 6)."""
