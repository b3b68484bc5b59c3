"""The Neutron v2.0 facade: one module per resource family over the network kinds."""
