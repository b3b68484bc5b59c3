"""unistack benchmarks: `python -m bench` (or `make bench`) prints figures and target ratios."""
