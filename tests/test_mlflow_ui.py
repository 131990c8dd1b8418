"""A study's MLflow store, served as `make ui` serves it, read through the REST API and in a browser.

The store is written by the stages' own tracker (``BackgroundTracker``) as the train and
evaluate stages write it: per-epoch metrics, the dataset splits as dataset inputs, figures as
artifacts, and a pause between the stages that the runs' durations must not count.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow_server import mlflow_server

from vaebench import data
from vaebench.background_tracker import BackgroundTracker
from vaebench.cells import Cell
from vaebench.tracking import (
    dataset_splits,
    local_tracking_uri,
    run_tags,
)

CURVES = ("val_elbo", "val_recon", "val_kl")
EPOCHS = 3
EVAL_SECONDS = 1.25
PAUSE_S = 1.0  # between the train and the evaluate stage: no stage's work
PICTURE_SHAPE = (64, 96)  # rows, columns of the figure logged as an artifact


def train_and_evaluate(root: Path, cells: list[Cell], bundle, picture: Path) -> dict[str, dict]:
    """Log each run as the two stages do; return what was logged, by run name."""
    rng = np.random.default_rng(0)
    logged: dict[str, dict] = {}
    ids: dict[str, str] = {}
    for cell in cells:  # the train stages
        tracker = BackgroundTracker("study", root)
        tracker.start(cell.run, {"model": cell.model, "train.lr": 0.003},
                      run_tags(root, bundle.manifest["arrays"]["sha256"], "eager", cell, "aten"),
                      on_run=lambda run_id, name=cell.run: ids.__setitem__(name, run_id))
        tracker.log_datasets(dataset_splits(bundle, root / "data" / "digits", ("train", "val")))
        history = []
        for epoch in range(1, EPOCHS + 1):
            row = {}
            for split in ("train", "val"):
                recon, kl = float(rng.uniform(-40, -20)), float(rng.uniform(1, 9))
                row |= {f"{split}_recon": recon, f"{split}_kl": kl, f"{split}_elbo": recon - kl}
            tracker.log_metrics(row, step=epoch)
            history.append(row)
        tracker.end("FINISHED")
        logged[cell.run] = {"history": history, "train_end": MlflowClient(
            local_tracking_uri(root)).get_run(ids[cell.run]).info.end_time}
    time.sleep(PAUSE_S)
    for cell in cells:  # the evaluate stages, resuming each run
        tracker = BackgroundTracker("study", root)
        tracker.start(cell.run, {}, {"stage": "evaluate"}, resume_id=ids[cell.run])
        tracker.log_datasets(dataset_splits(bundle, root / "data" / "digits", ("test",)))
        test = {"test_elbo": float(rng.uniform(-40, -20))}
        tracker.log_metrics(test)
        tracker.log_artifact(picture, "figures")
        tracker.end("FINISHED", seconds=EVAL_SECONDS)
        logged[cell.run] |= {"id": ids[cell.run], "test": test}
    return logged


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A fake study's store (two cells, one with two seeds) and `mlflow ui` serving it."""
    root = tmp_path_factory.mktemp("study")
    data.prepare("digits", {}, root / "data" / "digits")
    bundle = data.load(root / "data" / "digits")
    import matplotlib.pyplot as plt

    picture = root / "samples.png"
    plt.imsave(picture, np.linspace(0, 1, math.prod(PICTURE_SHAPE)).reshape(PICTURE_SHAPE),
               cmap="gray")
    cells = [Cell("vae", "digits", 0), Cell("vae", "digits", 1), Cell("iwae", "digits", 0)]
    with pytest.MonkeyPatch.context() as mp:  # mlflow.set_tracking_uri sets it: undo that
        mp.setenv("MLFLOW_TRACKING_URI", local_tracking_uri(root))
        logged = train_and_evaluate(root, cells, bundle, picture)
    sha = hashlib.sha256((root / "data" / "digits" / "arrays.npz").read_bytes()).hexdigest()
    with mlflow_server(local_tracking_uri(root), root, command="ui") as url:
        yield url, logged, sha


def rest(url: str, endpoint: str, body: dict | None = None, **query) -> dict:
    address = f"{url}/api/2.0/mlflow/{endpoint}"
    if query:
        address += "?" + "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
    req = urllib.request.Request(address, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def experiment_id(url: str) -> str:
    return rest(url, "experiments/get-by-name", experiment_name="study")["experiment"][
        "experiment_id"]


def runs_by_name(url: str) -> dict[str, dict]:
    found = rest(url, "runs/search", {"experiment_ids": [experiment_id(url)]})["runs"]
    return {r["info"]["run_name"]: r for r in found}


def test_rest_api_has_datasets_curves_figures_and_stage_durations(study):
    url, logged, sha = study
    runs = runs_by_name(url)
    assert set(runs) == set(logged)
    for name, run in runs.items():
        info = run["info"]
        assert info["status"] == "FINISHED"
        inputs = {d["dataset"]["name"]: d for d in run["inputs"]["dataset_inputs"]}
        assert set(inputs) == {"digits/train", "digits/val", "digits/test"}
        for split, context in (("train", "train"), ("val", "validation"), ("test", "test")):
            entry = inputs[f"digits/{split}"]
            assert entry["dataset"]["digest"] == sha[:36]  # MLflow keeps 36 characters
            tags = {t["key"]: t["value"] for t in entry["tags"]}
            assert tags == {"mlflow.data.context": context, "sha256": sha}
        for key in CURVES:
            points = rest(url, "metrics/get-history", run_id=info["run_id"], metric_key=key)
            assert [(m["step"], m["value"]) for m in points["metrics"]] == [
                (epoch, row[key]) for epoch, row in enumerate(logged[name]["history"], 1)]
        arts = rest(url, "artifacts/list", run_id=info["run_id"], path="figures")
        assert [f["path"] for f in arts["files"]] == ["figures/samples.png"]
        # the duration is the stages' own work: the evaluate stage adds its EVAL_SECONDS to
        # where the train stage ended, never the pause between them
        assert int(info["end_time"]) == logged[name]["train_end"] + int(EVAL_SECONDS * 1000)


def open_curves_chart(page, url: str, exp: str, run_ids: list[str]) -> None:
    """Open the compare view of ``run_ids`` and follow its link to a metric's chart, asking for
    the ELBO, reconstruction and KL on that one chart (the compare view's metric table is
    virtualized: take its first link, whichever metric it shows)."""
    page.goto(f"{url}/#/compare-runs?runs={json.dumps(run_ids)}&experiments={json.dumps([exp])}")
    link = page.locator("a[href*='#/metric?']").first
    link.wait_for(timeout=60_000)
    path, _, query = link.get_attribute("href").partition("?")
    params = dict(parse_qsl(query))
    assert json.loads(params["runs"]) == run_ids
    params |= {"metric": json.dumps(CURVES[0]), "plot_metric_keys": json.dumps(list(CURVES))}
    page.goto(f"{url}/{path}?{urlencode(params)}")


def close_assistant(page) -> None:
    """Fold MLflow's assistant panel away for the screenshots, where there is one."""
    close = page.get_by_role("button", name=re.compile("close", re.I))
    if close.count():
        close.last.click()


def test_ui_lists_every_run_and_compares_two(study, browser, screenshots):
    url, logged, _ = study
    runs = runs_by_name(url)
    exp = experiment_id(url)
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(f"{url}/#/experiments/{exp}/runs")
    for name in logged:
        page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    for run in runs.values():  # the runs table's Duration column, as MLflow formats it
        seconds = (int(run["info"]["end_time"]) - int(run["info"]["start_time"])) / 1000
        page.get_by_text(f"{seconds:.1f}s", exact=True).first.wait_for(timeout=10_000)
    close_assistant(page)
    page.screenshot(path=screenshots / "mlflow-runs.png")

    first, second = sorted(logged)[:2]
    open_curves_chart(page, url, exp, [logged[first]["id"], logged[second]["id"]])
    chart = page.locator(".js-plotly-plot")
    chart.first.wait_for(timeout=60_000)
    assert chart.count() == 1  # one chart ...
    for name in (first, second):  # ... with each run's three curves
        for key in CURVES:
            page.get_by_text(f"{name} ({key})", exact=True).first.wait_for(timeout=30_000)
            last = logged[name]["history"][-1][key]
            page.get_by_text(f"{last!r} (step={EPOCHS})").first.wait_for(timeout=10_000)
    page.screenshot(path=screenshots / "mlflow-compare-curves.png")
    # a figure in the run's artifact view, at its own size
    page.goto(f"{url}/#/experiments/{exp}/runs/{logged[first]['id']}/artifacts/figures/"
              "samples.png")
    page.wait_for_function("[...document.images].some(img => img.complete && "
                           f"img.naturalWidth === {PICTURE_SHAPE[1]})", timeout=60_000)
    page.close()
