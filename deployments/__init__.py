"""The Ray Serve layer: thin deployments that build pipeline objects and forward calls."""
