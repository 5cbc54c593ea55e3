"""From experiments (and the pipeline DSL) to TorchX AppDefs: the typed role metadata forge
components carry, the run table of a sweep, pipeline steps. Pure: the run table's bytes are handed
to a sink the caller provides (the components write it to the state dir).
"""
