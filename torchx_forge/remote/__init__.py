"""Launching from a laptop over SSH: the workspace shipped to the cluster as a snapshot (:mod:`.snapshot`)."""
