"""Block storage's kinds, its fake backend and its controller (the Cinder volume manager)."""
