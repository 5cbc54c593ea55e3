"""torchx-forge's TorchX components, installed as ``torchx_forge_components``.

Registered through the ``torchx.components`` entry point ``forge``, so they run
as ``torchx run forge.<name>``; TorchX's built-ins keep their usual names.
"""
