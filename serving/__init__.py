"""Serve Tritium's model repository on a real Triton Inference Server.

- :mod:`serving.local`: ``LocalTriton``, the ``tritonserver`` bundled in nvidia-pytriton (no GPU, no
  Docker), serving a runtime repository derived by :mod:`serving.runtime_repo`.
- :mod:`serving.docker_runtime`: the official ``nvcr.io/nvidia/tritonserver`` image via the Docker SDK.
- :mod:`serving.control`: explicit model control (load/unload) over gRPC.
- :mod:`serving.cli`: ``tritium serve`` and ``tritium models load/unload``.
"""
