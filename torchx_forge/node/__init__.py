"""What runs on the compute nodes, once per task: the launcher, the sweep-point runner, the
environment contract, checkpoint discovery, the hand-off between pipeline steps, artifacts, run
summaries and the batch script's requeue decision.

Standard library only (fsspec only where a URL needs it): never torchx, yaml or the submit side,
since this starts for every task. An import contract (pyproject.toml) and a test enforce it.
"""
