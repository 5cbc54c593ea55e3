"""The vocabulary both sides of the cluster share: states, kinds, the retry policy, the option
table, the state-dir layout, the FORGE_* environment variables, Slurm time and host-list syntax.

Pure and standard library only: no I/O, no torchx, no yaml. Everything else in torchx_forge
may import it; it imports nothing of torchx_forge but itself.
"""
