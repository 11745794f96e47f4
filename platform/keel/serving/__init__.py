"""Serving: models from the registry as a Ray Serve application, post-processing, the
prediction log and batch inference (stages 6-7)."""
