"""`vaebench paper PRESET`: run a paper preset end to end and put it beside the published number.

    vaebench paper presets/paper-fmnist.yaml            # or: python -m pipelines.paper run ...

1. Reads and validates the preset (an ordinary study plus a ``paper:`` block).
2. Prepares its dataset in a temporary folder and moves it into ``<study-dir>/data`` only when
   every file was found and verified: missing data stops here, with one line saying where to
   put the files, and nothing is written.
3. For every variant of the grid (one study without a grid) and every seed, runs the study's
   own stages as DVC would, with ``VAEBENCH_ROOT=<study-dir>/<variant>``: ``pipelines.train``,
   then ``pipelines.paper evaluate`` (S importance samples on the test set). A seed whose
   evaluation is newer than its training is not run again.
4. Writes ``reports/paper/<name>.json`` (a ``vaebench.paper.result.PaperResult``) and its
   ``.md`` (``vaebench.paper.report``).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.common import (
    REPORTS,
    ROOT,
    RUNS,
    cell_or_exit,
    fail,
    guarded,
    load_bundle,
    params_or_exit,
    setup_torch,
)

if TYPE_CHECKING:
    from vaebench.paper.result import SeedResult

app = typer.Typer(add_completion=False, no_args_is_help=True)
CODE = Path(__file__).resolve().parents[1]  # the project whose code the stages run


def _note(rows: list[SeedResult]) -> str:
    """How the stages ran, from the runner's cost records (``SeedResult.cost``)."""
    nices = sorted({m.cost.nice for m in rows if m.cost})
    if not nices:
        return "The runner's CPU times were not recorded for these runs."
    return (f"Stages ran at nice {', '.join(map(str, nices))}, one thread each, on a machine "
            "shared with other jobs: wall times are upper bounds of the same work on an idle "
            "machine; CPU times (user + system) measure the work itself.")


def _set(raw: dict, assignment: str) -> str:
    """Apply one ``KEY.PATH=VALUE`` (VALUE read as YAML) to ``raw``; returns its description."""
    import yaml

    key, sep, text = assignment.partition("=")
    if not sep or not key:
        fail(f"--set: expected KEY.PATH=VALUE, got {assignment!r}")
    node, parts = raw, key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            fail(f"--set: {key}: no mapping at {part!r}")
        node = node[part]
    old = node.get(parts[-1], "unset")
    node[parts[-1]] = yaml.safe_load(text)
    return f"{key} = {node[parts[-1]]!r} here (the preset's, as published: {old!r})"


def _preset(path: Path, overrides: list[str] | None = None):
    """(raw mapping, Params, PaperConfig) of a paper preset with ``--set`` overrides applied
    (each one listed among the protocol differences), or one line and exit 2."""
    from vaebench.config import ConfigError, parse_params, read_yaml
    from vaebench.paper.config import parse_paper

    params_or_exit(path)  # the preset itself is a valid study
    raw = guarded(lambda: read_yaml(path))
    if not raw.get("paper"):
        fail(f"{path.name}: no paper block; a paper preset names its published number there")
    try:
        parse_paper(raw)
    except ConfigError as err:
        fail(f"{path.name}: {err}")
    notes = [_set(raw, a) for a in overrides or []]
    if notes:
        raw["paper"]["differences"] = [f"Override: {n}." for n in notes] + list(
            raw["paper"].get("differences") or [])
    try:
        params = parse_params(raw)
        paper = parse_paper(raw)
    except ConfigError as err:
        fail(f"--set: {err}")
    return raw, params, paper


def _prepare_data(name: str, block: dict | None, dest: Path) -> None:
    """The dataset in ``dest``, prepared in a temporary folder first: on failure (missing or
    damaged raw files) nothing is left behind."""
    from vaebench import data

    if (dest / "manifest.json").exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest.parent)) if dest.parent.exists() \
        else Path(tempfile.mkdtemp(prefix=f"vaebench-{name}."))
    try:
        guarded(lambda: data.prepare(name, block, tmp / name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stage(args: list[str], root: Path, threads: int | None) -> dict[str, float]:
    """Run one stage as DVC would; its wall time and CPU time (user + system, all threads)."""
    env = {**os.environ, "VAEBENCH_ROOT": str(root), "PYTHONPATH": str(CODE)}
    # one compiled-kernel cache for every variant (setup_torch would give each study its own)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CODE / ".cache" / "inductor"))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run([sys.executable, "-m", *args, "--params", "params.yaml"], cwd=CODE,
                         env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(out.returncode)
    return {"wall_seconds": time.time() - started,
            "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def _extend(source: Path, dest: Path, params, cell) -> str:
    """Start ``cell`` from the checkpoint of an earlier run of the same preset in ``source``
    (a run folder) that differs only in ``epochs``; returns a note for the report.

    ``epochs`` only caps the training loop (the KL warm-up, early stopping and the constant or
    Burda learning rates do not depend on it), so a run extended from epoch E computes bit for
    bit what one uninterrupted run computes. The earlier checkpoint must carry the fingerprint
    its own config has under this code (same code, data, seed), and must not have stopped.
    """
    import torch

    from vaebench.cells import run_spec
    from vaebench.io import atomic_write, read_json

    if (dest / "checkpoint.pt").exists():
        return f"extends {source} (already copied)"
    spec = run_spec(params, cell)
    old = read_json(source / "train.json", "the run to extend must be finished")
    others = sorted(k for k, v in spec.train.model_dump().items()
                    if k != "epochs" and old["train_config"].get(k) != v)
    if others:
        fail(f"--extend-from: {source} was trained with other {', '.join(others)}; only "
             "epochs may differ")
    if old["train_config"]["epochs"] >= spec.train.epochs or spec.train.lr_schedule == "cosine":
        fail(f"--extend-from: {source} has {old['train_config']['epochs']} epochs; extend it "
             f"to more (got {spec.train.epochs}), and not under the cosine schedule")
    if (old.get("early_stopping") or {}).get("stopped_at"):
        fail(f"--extend-from: {source} stopped early at epoch "
             f"{old['early_stopping']['stopped_at']}; there is nothing to extend")
    ckpt = torch.load(source / "checkpoint.pt", weights_only=False)
    bundle = load_bundle(cell.dataset)
    checksum = bundle.manifest.get("arrays", {}).get("sha256", "")
    old_params = params.model_copy(deep=True)
    old_params.train[cell.model]["epochs"] = old["train_config"]["epochs"]
    if ckpt.get("fingerprint") != run_spec(old_params, cell).fingerprint(checksum):
        fail(f"--extend-from: {source / 'checkpoint.pt'} was trained by other code, data or "
             "settings than this code would use; retrain it")
    ckpt["fingerprint"] = spec.fingerprint(checksum)
    atomic_write(dest / "checkpoint.pt", lambda p: torch.save(ckpt, p))
    return (f"Extends the run in {source} (trained by the same code and settings to "
            f"{ckpt['state']['epoch']} epochs): its wall and CPU times cover the extension only")


def _with_root(root: Path, fn, *args):
    """``fn(*args)`` with the stage helpers' data folder pointed at study ``root``."""
    from pipelines import common

    saved = common.DATA
    common.DATA = root / "data"
    try:
        return fn(*args)
    finally:
        common.DATA = saved


def _seed_done(run_dir: Path) -> bool:
    metrics, train = run_dir / "paper" / "metrics.json", run_dir / "train" / "train.json"
    return metrics.exists() and train.exists() and metrics.stat().st_mtime > train.stat().st_mtime


@app.command("run")
def run(preset: Annotated[Path, typer.Argument(help="a paper preset, e.g. "
                                                 "presets/paper-fmnist.yaml")],
        study_dir: Annotated[Path | None, typer.Option(
            help="where the study runs (default studies/<name>)")] = None,
        out: Annotated[Path | None, typer.Option(
            help="where the result goes (default reports/paper)")] = None,
        seeds: Annotated[str | None, typer.Option(
            help="a comma-separated subset of study.seeds")] = None,
        threads: Annotated[int | None, typer.Option(help="torch threads of every stage")] = None,
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="KEY.PATH=VALUE, e.g. train.vae.epochs=300; listed in the "
            "report")] = None,
        extend_from: Annotated[Path | None, typer.Option(
            help="the study folder of an earlier run of this preset with fewer epochs: each "
            "seed continues from its checkpoint")] = None,
        track: Annotated[bool, typer.Option(help="log to MLflow")] = True) -> None:
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.paper.config import variants

    raw, params, paper = _preset(preset.resolve(), set_)
    model, dataset = params.study.models[0], params.study.datasets[0]
    chosen = params.study.seeds if seeds is None else [int(s) for s in seeds.split(",")]
    bad = [s for s in chosen if s not in params.study.seeds]
    if bad:
        fail(f"--seeds: {bad} not in study.seeds; valid choices: {params.study.seeds}")
    study_dir = (study_dir or ROOT / "studies" / paper.name).resolve()
    _prepare_data(dataset, params.data[dataset], study_dir / "data" / dataset)
    import yaml

    vs = variants(raw, paper)
    for name, vparams in vs:
        vdir = study_dir if len(vs) == 1 else study_dir / name
        vdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(vdir / "params.yaml", yaml.safe_dump(vparams, sort_keys=False))
        if vdir != study_dir and not (vdir / "data").exists():
            (vdir / "data").symlink_to(study_dir / "data", target_is_directory=True)
        for seed in chosen:
            run_dir = vdir / "runs" / f"{model}-{dataset}" / f"seed{seed}"
            if _seed_done(run_dir):
                typer.echo(f"{name} seed {seed}: evaluated already")
                continue
            if extend_from is not None:
                from vaebench.cells import Cell
                from vaebench.config import parse_params

                src = extend_from.resolve() / vdir.relative_to(study_dir) / run_dir.relative_to(
                    vdir) / "train"
                note = _with_root(vdir, _extend, src, run_dir / "train", parse_params(vparams),
                                  Cell(model, dataset, seed))
                atomic_write_text(run_dir / "paper" / "extended.txt", note + "\n")
            flags = [] if track else ["--no-track"]
            cost = {"train": _stage(["pipelines.train", model, dataset, "--seed", str(seed),
                                     *flags, "--no-progress"], vdir, threads),
                    "evaluate": _stage(["pipelines.paper", "evaluate", model, dataset, "--seed",
                                        str(seed)], vdir, threads),
                    "threads": threads, "nice": os.nice(0)}
            atomic_write_json(vdir / "runs" / f"{model}-{dataset}" / f"seed{seed}" / "paper" /
                              "cost.json", cost)
    report(preset=preset, study_dir=study_dir, out=out, seeds=",".join(map(str, chosen)),
           set_=set_)


@app.command("evaluate")
def evaluate(model: str, dataset: str,
             seed: int = typer.Option(..., help="the training seed, one of study.seeds"),
             params_file: str = typer.Option("params.yaml", "--params")) -> None:
    """The published protocol's test metrics of one trained run (runs/<cell>/seed<k>/paper/)."""
    from vaebench.cells import run_spec
    from vaebench.io import atomic_write_json, read_json
    from vaebench.machine import machine_info
    from vaebench.paper.config import parse_paper
    from vaebench.paper.evaluate import evaluate_paper
    from vaebench.train import load_trained

    started = time.time()
    params = params_or_exit(params_file)
    if params.paper is None:
        fail(f"{params_file}: no paper block")
    paper = guarded(lambda: parse_paper(params.model_dump()))
    cell = cell_or_exit(params, model, dataset, seed, None)
    spec = guarded(lambda: run_spec(params, cell))
    train_dir = RUNS / cell.run / "train"
    if not (train_dir / "train.json").exists():
        fail(f"{train_dir}: run {cell.run!r} is not trained; run its train stage first")
    bundle = guarded(lambda: load_bundle(dataset))
    setup_torch(params)
    trained, _, _ = load_trained(spec, bundle, train_dir)
    train = read_json(train_dir / "train.json")

    def progress(done: int, total: int) -> None:
        if done % 1000 == 0 or done == total:
            typer.echo(f"{cell.run}: -L_{paper.importance_samples} on {done}/{total} test "
                       f"images ({time.time() - started:.0f} s)", err=True)

    metrics = guarded(lambda: evaluate_paper(trained, bundle, paper, cell.eval_seed, progress))
    eval_seconds = time.time() - started
    metrics.update(
        run=cell.run, seed=seed, epochs=int(train["epochs"]),
        early_stopping=train.get("early_stopping"), train_seconds=train["train_seconds"],
        train_stage_seconds=train["stage_seconds"], eval_seconds=eval_seconds,
        wall_seconds=train["stage_seconds"] + eval_seconds,
        val_elbo_last=train["history"][-1]["val_elbo"] if train["history"] else None,
        date=datetime.now(UTC).strftime("%Y-%m-%d"), machine=machine_info(CODE))
    atomic_write_json(RUNS / cell.run / "paper" / "metrics.json", metrics)
    typer.echo(f"{cell.run}: NLL {metrics['nll']:.2f} ± {metrics['nll_se']:.2f} (−L_"
               f"{metrics['importance_samples']}, {metrics['test_points']} images), ELBO "
               f"{metrics['elbo']:.2f}; {eval_seconds / 60:.1f} min")


def _seed_result(folder: Path) -> SeedResult:
    """One seed's ``SeedResult``: the paper evaluation's metrics.json in ``folder``, the
    runner's cost.json and extended.txt beside it, and the best validation ELBO by epoch from
    its train.json; a one-line ValueError naming the file and field that break the contract."""
    from pydantic import ValidationError

    from vaebench.io import read_json
    from vaebench.paper.report import best_by_epoch
    from vaebench.paper.result import SeedResult, validation_message

    path = folder / "metrics.json"
    row = read_json(path, "run `vaebench paper` to evaluate it")
    if (folder / "cost.json").exists():  # CPU time, measured by the runner
        row["cost"] = read_json(folder / "cost.json")
    if (folder / "extended.txt").exists():
        row["extended"] = (folder / "extended.txt").read_text().strip()
    history = read_json(folder.parent / "train" / "train.json")["history"]
    row["val_elbo_best_by_epoch"] = best_by_epoch(
        [r["val_elbo"] for r in history], every=max(1, min(50, len(history) // 8)))
    try:
        return SeedResult.model_validate(row)
    except ValidationError as err:
        raise ValueError(f"{path} (with cost.json and extended.txt beside it): "
                         f"{validation_message(err)}") from None


@app.command("report")
def report(preset: Annotated[Path, typer.Argument()],
           study_dir: Annotated[Path | None, typer.Option()] = None,
           out: Annotated[Path | None, typer.Option()] = None,
           seeds: Annotated[str | None, typer.Option()] = None,
           set_: Annotated[list[str] | None, typer.Option("--set")] = None) -> None:
    """Gather every variant's evaluated seeds and write reports/paper/<name>.{json,md}."""
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import machine_info
    from vaebench.paper import report as paper_report
    from vaebench.paper.config import variants
    from vaebench.paper.published import matching

    raw, params, paper = _preset(preset.resolve(), set_)
    model, dataset = params.study.models[0], params.study.datasets[0]
    chosen = params.study.seeds if seeds is None else [int(s) for s in seeds.split(",")]
    study_dir = (study_dir or ROOT / "studies" / paper.name).resolve()
    vs = variants(raw, paper)
    gathered = []
    for name, vparams in vs:
        vdir = study_dir if len(vs) == 1 else study_dir / name
        train = vparams["train"][model]
        folders = [vdir / "runs" / f"{model}-{dataset}" / f"seed{s}" / "paper" for s in chosen]
        rows = guarded(lambda folders=folders: [_seed_result(f) for f in folders])
        gathered.append(paper_report.VariantRuns(name, train, matching(paper.published, train),
                                                 rows))
    first = gathered[0].seeds[0]
    doc = paper_report.result(paper, gathered, first.machine or machine_info(CODE),
                              max(m.date for v in gathered for m in v.seeds),
                              _note([m for v in gathered for m in v.seeds]))
    out = (out or REPORTS / "paper").resolve()
    atomic_write_json(out / f"{paper.name}.json", doc.model_dump(mode="json"))
    atomic_write_text(out / f"{paper.name}.md", paper_report.markdown(doc))
    for v in doc.variants:
        c = v.comparison
        typer.echo(f"{paper.name} {v.name}: NLL {v.nll.mean:.2f} ± {v.nll.half_width:.2f} over "
                   f"{v.nll.n} seed(s)"
                   + (f"; published {v.published.nll:.2f}: {c.verdict}" if c and v.published
                      else ""))
    typer.echo(f"wrote {out / paper.name}.json and .md")


if __name__ == "__main__":
    app()
