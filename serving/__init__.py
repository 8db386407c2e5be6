"""Serve Tritium's model repository on a real Triton Inference Server.

- :mod:`tritium.serving.local`: ``LocalTriton``, the ``tritonserver`` bundled in nvidia-pytriton (no GPU, no
  Docker), serving a runtime repository derived by :mod:`tritium.serving.runtime_repo`.
- :mod:`tritium.serving.docker_runtime`: the official ``nvcr.io/nvidia/tritonserver`` image via the Docker SDK.
- :mod:`tritium.serving.runtime`: ``TritonRuntime``, the one interface both runtimes implement.
- :mod:`tritium.serving.supervisor`: start, watch and restart (``--restart on-failure``) a runtime.
- :mod:`tritium.serving.control`: explicit model control (load/unload) over gRPC.
- :mod:`tritium.serving.cli`: ``tritium serve`` and ``tritium models load/unload``.
- :mod:`tritium.serving.tuning`: ``tritium tune``, the serving config searched under a latency SLO.
"""
