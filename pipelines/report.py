"""DVC stage `report`: the study's tables, verdicts, figures and HTML page.

Reads every declared run (``vaebench.report.read_runs``) and writes reports/{summary.csv,
runs.csv, comparisons.csv, theory.json, metrics.json, index.html, figures/, plots/}. Exits 1,
after writing everything, when a check fails.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import typer

from pipelines.common import REPORTS, ROOT, RUNS, fail, guarded, params_or_exit

app = typer.Typer(add_completion=False)


def compact_png(src: Path, dst: Path) -> None:
    """Copy a picture as a small PNG: 8-bit grey when its colour channels agree, else RGB."""
    import numpy as np
    from PIL import Image

    with Image.open(src) as img:
        rgb = img.convert("RGB")
    pixels = np.asarray(rgb)
    grey = (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    (rgb.convert("L") if grey else rgb).save(dst, format="PNG", optimize=True)


def write_figures(reports_dir: Path, runs) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Draw the figures and copy the first seed's pictures of each cell into a fresh folder,
    then swap it in."""
    from vaebench.report.figures import make_figures

    tmp = reports_dir / f".figures.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        figures = make_figures(runs, tmp)
        pictures: dict[str, list[str]] = {}
        first = {}
        for r in runs:
            first.setdefault(r.cell.name, r)
        for name, r in first.items():
            for pic, src in r.pictures.items():
                (tmp / name).mkdir(parents=True, exist_ok=True)
                compact_png(src, tmp / name / f"{pic}.png")
                pictures.setdefault(r.cell.run, []).append(f"figures/{name}/{pic}.png")
        final = reports_dir / "figures"
        old = reports_dir / f".figures.{os.getpid()}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: f"figures/{v}" for k, v in figures.items()}, pictures


def write_report(params, runs, reports_dir: Path):
    """Compute and write every output of the report stage; return the Report."""
    import pandas as pd

    from vaebench.gradient_results import GradientStudyResult
    from vaebench.io import atomic_write, atomic_write_json, atomic_write_text, read_json
    from vaebench.machine import machine_info
    from vaebench.nets.linear import resolve_gemm
    from vaebench.paper.result import read_result
    from vaebench.plots import RatePoint, RunCurves, write_plots
    from vaebench.report import build, page

    reports_dir.mkdir(parents=True, exist_ok=True)
    report = build.build_report(params, runs)
    figures, pictures = write_figures(reports_dir, runs)
    write_plots(reports_dir / "plots", [RunCurves(r.cell, r.train["history"]) for r in runs],
                [RatePoint.of(r.cell, r.metrics.kl.mean, r.metrics.recon.mean) for r in runs])
    atomic_write(reports_dir / "summary.csv", lambda p: report.cells.to_csv(p, index=False))
    atomic_write(reports_dir / "runs.csv", lambda p: report.long.to_csv(p, index=False))
    comparisons = pd.DataFrame([asdict(c) for c in report.comparisons])
    atomic_write(reports_dir / "comparisons.csv", lambda p: comparisons.to_csv(p, index=False))
    atomic_write_json(reports_dir / "theory.json", build.theory_document(report))
    atomic_write_json(reports_dir / "metrics.json", build.headline_metrics(report))
    planted_path = reports_dir / "planted_bugs.json"
    planted = read_json(planted_path) if planted_path.exists() else None
    wall = {"train": f"{sum(r.train.get('stage_seconds', 0.0) for r in runs):.0f}",
            "evaluate": f"{sum(r.eval_seconds for r in runs if r.eval_seconds == r.eval_seconds):.0f}"}
    machine = machine_info(ROOT, resolve_gemm(params.study.gemm))
    grad_path = reports_dir / "gradients" / "gradients.json"
    gradients = (GradientStudyResult.model_validate(read_json(grad_path, "the gradients stage"))
                 if grad_path.exists() else None)
    papers = [read_result(f) for f in sorted((reports_dir / "paper").glob("*.json"))]
    html = page.render(report, figures, pictures, planted, machine, wall, gradients, papers)
    atomic_write_text(reports_dir / "index.html", html)
    return report


def report_stage(params_file: str | Path, runs_dir: Path, reports_dir: Path) -> None:
    """The whole stage: read, judge, write; exit 2 on bad input, 1 when a check fails."""
    from vaebench.cells import cells
    from vaebench.report import failure_line, read_runs

    started = time.time()
    params = params_or_exit(params_file)
    runs = guarded(lambda: read_runs(runs_dir, cells(params)))
    report = guarded(lambda: write_report(params, runs, reports_dir))
    line = failure_line(report)
    if line:
        fail(line, code=1)
    model = report.family("model")
    typer.echo(f"report: {len(runs)} runs, {sum(c.passed for c in model)}/{len(model)} model "
               f"checks pass, {len(report.comparisons)} paired comparisons; wrote {reports_dir} "
               f"in {time.time() - started:.1f} s")


@app.command()
def main(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    report_stage(params_file, RUNS, REPORTS)


if __name__ == "__main__":
    app()
