"""The submit side: run options, which Slurm jobs an AppDef becomes, the batch scripts, the one
place Slurm commands run, parsing their output, submission, status, logs and resubmission.
Runs on the login node (and in the small companion job that resubmits failed tasks).
"""
