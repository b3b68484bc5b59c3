"""The Block Storage service (Cinder v3 with microversions) facade, at `/volume`."""
