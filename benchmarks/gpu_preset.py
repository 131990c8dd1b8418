"""The cut of ``presets/gpu.yaml`` that ``make gpu-check`` runs on a GPU: one conv VAE on
dSprites (rendered locally, no download), one seed, two epochs, a light evaluation.

It lives here rather than inline in ``benchmarks/gpu_check.sh`` so that the CPU test suite
validates it against the configuration schema (``tests/test_gpu_preset.py``): a GPU is lent
rarely, and a preset that no longer parses should fail in CI, not on the GPU.
Run: ``python -m benchmarks.gpu_preset OUT.yaml [--device cuda|cpu]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "presets" / "gpu.yaml"


def check_params(device: str = "cuda", preset: Path = PRESET) -> dict:
    """``preset`` cut to the gpu-check's few steps, as a raw params mapping (pure)."""
    raw = yaml.safe_load(preset.read_text())
    raw["study"].update(models=["vae"], datasets=["dsprites"], seeds=[0], linear=[],
                        device=device)
    raw["data"] = {"dsprites": {"n_samples": 20000}, "linear-gaussian": {}}
    raw["train"]["vae"].update(epochs=2, min_steps=0)
    raw["sweep"]["betas"] = [1.0]
    raw.setdefault("gradients", {})["dataset"] = "dsprites"  # the one image data block made
    raw["evaluate"].update(elbo_points=500, iw_k=50, iw_ks=[1, 5, 50], iw_points=200,
                           mi_points=500, disentanglement_points=1000)
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="where to write the params file")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="the train stage's device (cpu: a dry run of the steps)")
    args = ap.parse_args()
    args.out.write_text(yaml.safe_dump(check_params(args.device), sort_keys=False))


if __name__ == "__main__":
    main()
