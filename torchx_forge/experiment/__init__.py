"""Experiment files: YAML loading with line numbers, overrides, the schema, sweep expansion and
pipeline ``stages:``. Pure: no Slurm, no subprocess, no storage (the caller reads the file's text).
"""
