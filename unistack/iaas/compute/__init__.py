"""Compute (Nova): the kinds, the scheduler, the server controller and its drivers."""
