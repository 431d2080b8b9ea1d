"""Blend two LoRA adapters of the same base in weight space: interpolate, or extrapolate past the second.

For every adapted projection the merged updates scale x (B @ A) of the two adapters are combined as
``(1 - t) x first + t x second``: t = 0.5 averages them, t = 1.5 carries on from the first towards the
second by half as far again (weight extrapolation, as in ExPO, Zheng et al. 2024). The result is
factored back into a LoRA adapter of the second's rank by a truncated SVD (the script prints how much of
each update that keeps), in the second's dtype, so it loads like any checkpoint:

    python scripts/blend_adapters.py FIRST SECOND --t 1.5 --out runs/blend-1.5
    titlecraft eval --model runs/blend-1.5 ...

Findings in docs/evaluation.md (the one-epoch and the second-epoch adapters of the embedded model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import ADAPTER_WEIGHTS, adapter_checkpoint, file_sha256  # noqa: E402


def blended_adapter(
    first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], first_lora: dict, second_lora: dict, t: float
) -> tuple[dict[str, torch.Tensor], float]:
    """The blend as LoRA tensors of the second's rank and scale, and the smallest share of an update's
    energy (squared singular values) that the truncation kept."""
    rank, scale = second_lora["r"], second_lora["lora_alpha"] / second_lora["r"]
    first_scale = first_lora["lora_alpha"] / first_lora["r"]
    if set(first) != set(second):
        raise SystemExit("the two adapters adapt different projections; they cannot be blended")
    tensors, kept = {}, 1.0
    for down in sorted(key for key in second if ".lora_A." in key):
        up = down.replace(".lora_A.", ".lora_B.")
        update = (1 - t) * first_scale * (first[up].float() @ first[down].float())
        update += t * scale * (second[up].float() @ second[down].float())
        left, values, right = torch.linalg.svd(update, full_matrices=False)
        kept = min(kept, float((values[:rank] ** 2).sum() / (values**2).sum().clamp_min(1e-30)))
        root = values[:rank].sqrt()
        tensors[down] = (root[:, None] * right[:rank]).to(second[down].dtype).contiguous()
        tensors[up] = (left[:, :rank] * root[None, :] / scale).to(second[up].dtype).contiguous()
    return tensors, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="adapter checkpoint folder, or embedded for the shipped one")
    parser.add_argument("second", help="adapter checkpoint folder, or embedded for the shipped one")
    parser.add_argument("--t", type=float, required=True, help="0: the first, 1: the second, 1.5: past it")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    (first_dir, first_meta), (second_dir, second_meta) = adapter_checkpoint(args.first), adapter_checkpoint(args.second)
    if first_meta["base"] != second_meta["base"]:
        raise SystemExit(f"the adapters have different bases: {first_meta['base']} and {second_meta['base']}")
    tensors, kept = blended_adapter(
        load_file(str(first_dir / ADAPTER_WEIGHTS)),
        load_file(str(second_dir / ADAPTER_WEIGHTS)),
        first_meta["lora"],
        second_meta["lora"],
        args.t,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / ADAPTER_WEIGHTS))
    blend = {
        "t": args.t,
        "first": {"path": args.first, "sha256": file_sha256(first_dir / ADAPTER_WEIGHTS)},
        "second": {"path": args.second, "sha256": file_sha256(second_dir / ADAPTER_WEIGHTS)},
        "min_energy_kept": round(kept, 6),
        "made_by": f"python scripts/blend_adapters.py {args.first} {args.second} --t {args.t} --out DIR",
    }
    meta = {**second_meta, "name": f"blend of two adapters (t = {args.t})", "blend": blend}
    (args.out / "titlecraft.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{args.out}: rank {second_meta['lora']['r']}, at least {kept:.2%} of every update kept")


if __name__ == "__main__":
    main()
