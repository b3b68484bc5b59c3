"""The self-hosting control plane: the ControlPlane operator, its rendering, and the gateway."""
