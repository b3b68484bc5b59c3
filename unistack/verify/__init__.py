"""Verification of a running unistack cloud by the clients and test suites others wrote.

`tempest` installs OpenStack Tempest into its own virtualenv, writes `tempest.conf` from what the
running cloud reports, runs the chosen tests and summarises the subunit stream. `unistack.cli`
(`unistack verify tempest`) drives it; nothing here imports the CLI.
"""
