"""DVC stage `report`: the study's tables, theory verdicts, figures and HTML page.

Reads runs/<run>/{eval/metrics.json, eval/checks.json, train/train.json, figures/*.png} for
every run params.yaml declares and writes reports/{summary.csv, theory.json, metrics.json,
index.html, figures/}. Exits 1, after writing everything, when a theory check fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from pipelines.common import REPORTS, RUNS, fail, guarded, params_or_exit

app = typer.Typer(add_completion=False)


def read_runs(runs_dir: Path, cells) -> list:
    """Every declared run's files; one line naming the runs whose folder is missing."""
    from vaebench.io import read_json as _read_json
    from vaebench.report import PICTURES, RunData

    missing = [c.run for c in cells if not (runs_dir / c.run).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} declared run(s) have no folder under {runs_dir}: "
            f"{', '.join(missing)}; run their train and evaluate stages (`dvc repro`) first")
    runs = []
    for c in cells:
        folder = runs_dir / c.run
        metrics = _read_json(folder / "eval" / "metrics.json",
                             f"run {c.run!r} is not evaluated; run its evaluate stage")
        if metrics.get("run", c.run) != c.run:
            raise ValueError(f"{folder / 'eval' / 'metrics.json'}: belongs to run "
                             f"{metrics.get('run')!r}, expected {c.run!r}")
        records = _read_json(folder / "eval" / "checks.json",
                             f"run {c.run!r} is not evaluated; run its evaluate stage")
        if not isinstance(records, list):
            raise ValueError(f"{folder / 'eval' / 'checks.json'}: expected a list of check "
                             f"records, got {type(records).__name__}")
        train = _read_json(folder / "train" / "train.json",
                           f"run {c.run!r} is not trained; run its train stage")
        pictures = {name: folder / "figures" / f"{name}.png" for name in PICTURES
                    if (folder / "figures" / f"{name}.png").is_file()}
        runs.append(RunData(c, metrics, records, train, pictures))
    return runs


def compact_png(src: Path, dst: Path) -> None:
    """Copy a picture as a small PNG: 8-bit grey when its colour channels agree, else RGB."""
    import numpy as np
    from PIL import Image

    with Image.open(src) as img:
        rgb = img.convert("RGB")
    pixels = np.asarray(rgb)
    grey = (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    (rgb.convert("L") if grey else rgb).save(dst, format="PNG", optimize=True)


def _write_figures(reports_dir: Path, runs, summary, history, kl_dims):
    """Draw the figures and copy each run's pictures into a fresh folder, then swap it in."""
    from vaebench.report import disentanglement_frame, make_figures, markdown_table

    tmp = reports_dir / f".figures.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        figures = make_figures(summary, history, kl_dims, tmp)
        dis = disentanglement_frame(runs)
        if not dis.empty:
            (tmp / "disentanglement.md").write_text(
                "dSprites-like data (rendered procedurally, not the original file); MIG "
                f"variant: {'; '.join(sorted(set(dis['mig_variant'])))}.\n\n"
                + markdown_table(dis.drop(columns=["mig_variant"])))
        pictures: dict[str, list[str]] = {}
        for r in runs:
            for name, src in r.pictures.items():
                (tmp / r.cell.run).mkdir(parents=True, exist_ok=True)
                compact_png(src, tmp / r.cell.run / f"{name}.png")
                pictures.setdefault(r.cell.run, []).append(f"figures/{r.cell.run}/{name}.png")
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
    """Compute and write every output of the report stage; return the judged theory checks."""
    from vaebench import report
    from vaebench.io import atomic_write, atomic_write_json, atomic_write_text

    reports_dir.mkdir(parents=True, exist_ok=True)
    summary = report.summary_frame(runs)
    sweep, sweep_note = report.sweep_records(runs)
    theory = report.finalize_checks([rec for r in runs for rec in r.records] + sweep,
                                    params.theory.alpha)
    figures, pictures = _write_figures(reports_dir, runs, summary, report.history_frame(runs),
                                       report.kl_dims_frame(runs))
    atomic_write(reports_dir / "summary.csv", lambda p: summary.to_csv(p, index=False))
    atomic_write_json(reports_dir / "theory.json", report.theory_document(theory))
    atomic_write_json(reports_dir / "metrics.json", report.headline_metrics(summary, theory))
    page = report.render_html(params, runs, summary, theory, figures, pictures, sweep_note)
    atomic_write_text(reports_dir / "index.html", page)
    return theory


def report_stage(params_file: str | Path, runs_dir: Path, reports_dir: Path) -> None:
    """The whole stage: read, judge, write; exit 2 on bad input, 1 when a check fails."""
    from vaebench.report import declared_runs, failure_line

    params = params_or_exit(params_file)
    runs = guarded(lambda: read_runs(runs_dir, declared_runs(params)))
    theory = guarded(lambda: write_report(params, runs, reports_dir))
    line = failure_line(theory)
    if line:
        fail(line, code=1)
    size = sum(p.stat().st_size for p in (reports_dir / "figures").rglob("*") if p.is_file())
    typer.echo(f"report: {len(runs)} runs, {theory.n_passed}/{len(theory.checks)} theory checks "
               f"pass (z* = {theory.z_star:.3f} over m = {theory.m}); wrote {reports_dir} "
               f"(figures {size / 1e6:.2f} MB)")


@app.command()
def main(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    report_stage(params_file, RUNS, REPORTS)


if __name__ == "__main__":
    app()
