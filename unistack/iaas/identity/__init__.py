"""Identity (the Keystone role): its kinds, password hashing, role resolution and bootstrap."""
