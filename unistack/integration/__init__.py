"""Integration with outside interfaces that other programs call or implement.

Code here speaks a contract defined elsewhere (the CNI spec, for instance) so that unistack's
parts stay swappable with the reference implementations of that contract.
"""
