"""torchx-forge: Slurm arrays, sweeps, retries, checkpoint resume and pipelines for TorchX.

Importing this package is cheap on purpose: the task launcher runs on every
compute node for every task and imports nothing heavy.
"""

__version__ = "0.1.0"
