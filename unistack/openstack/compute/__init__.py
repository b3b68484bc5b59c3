"""The compute service (Nova v2.1) facade: one module per resource family."""
