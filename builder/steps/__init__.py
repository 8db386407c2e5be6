"""The build's techniques, one module each, registered by their recipe ``kind``.

Adding a technique: a module here with one :class:`~tritium.builder.steps.base.Technique`
subclass, its variant spec in :mod:`tritium.builder.recipe` (one more member of ``Variant``), and
one line in :data:`TECHNIQUES`.
"""

from __future__ import annotations

from tritium.builder.steps.base import Job, Parent, Technique
from tritium.builder.steps.distill import Distill
from tritium.builder.steps.fp16 import OnnxFp16
from tritium.builder.steps.int8_dynamic import OnnxInt8Dynamic
from tritium.builder.steps.int8_static import OnnxInt8Static
from tritium.builder.steps.onnx_fp32 import OnnxFp32
from tritium.builder.steps.openvino import OpenVinoFp32, OpenVinoInt8
from tritium.builder.steps.prune_structured import PruneStructured
from tritium.builder.steps.prune_unstructured import PruneUnstructured
from tritium.builder.steps.qat import QatInt8
from tritium.builder.steps.torchscript import TorchScript

TECHNIQUES: dict[str, Technique] = {
    technique.kind: technique
    for technique in (
        OnnxFp32(),
        OnnxInt8Dynamic(),
        OnnxInt8Static(),
        OnnxFp16(),
        TorchScript(),
        QatInt8(),
        PruneUnstructured(),
        PruneStructured(),
        Distill(),
    )
}
TECHNIQUES.update({technique.kind: technique for technique in (OpenVinoFp32(), OpenVinoInt8())})

__all__ = ["TECHNIQUES", "Job", "Parent", "Technique"]
