"""Serving HAN embeddings with NVIDIA Triton Inference Server.

- :mod:`.server`: start/stop the ``tritonserver`` bundled in ``nvidia-pytriton`` on loopback;
- :mod:`.stub_env`: the NumPy 1.x environment that server's python-backend stub needs;
- :mod:`.handler`: what the generated python-backend models do with a dynamic batch;
- :mod:`.client`: embed through Triton (HTTP or gRPC) with the local ``Extractor``'s contract;
- ``python_model/model.py``: the python-backend model template.

The repository generator is :func:`han_deploy.serve.triton.write_triton_repository`. Nothing here
imports tritonclient or starts a process at import time.
"""
