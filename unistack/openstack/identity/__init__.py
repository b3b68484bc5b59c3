"""The Keystone v3 API over the identity objects (`unistack.iaas.identity`)."""
