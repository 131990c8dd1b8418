"""`vaebench`: the study's stages for people who don't use DVC.

    vaebench data digits
    vaebench train vae digits --seed 0
    vaebench evaluate vae digits --seed 0
    vaebench report
    vaebench paper presets/paper-fmnist.yaml   # a published protocol, beside its number
    vaebench study            # every stage of params.yaml, in order (no caching)
"""

from __future__ import annotations

import typer

from pipelines import data as data_stage
from pipelines import evaluate as evaluate_stage
from pipelines import paper as paper_stage
from pipelines import train as train_stage

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
app.command("data", help="Prepare one dataset into data/<name>/.")(data_stage.main)
app.command("train", help="Train one (model, dataset) cell.")(train_stage.main)
app.command("evaluate", help="Evaluate one trained cell.")(evaluate_stage.main)
app.command("paper", help="Run a paper preset and compare it with its published number.")(
    paper_stage.run)


@app.command("report", help="Tables, figures, the theory verdict and reports/index.html.")
def report(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from pipelines import report as report_stage

    report_stage.main(params_file=params_file)


@app.command("study", help="Run every stage of the study in order, without DVC's caching.")
def study(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from pipelines import validate as validate_stage
    from pipelines.common import params_or_exit
    from vaebench.config import cells

    params = params_or_exit(params_file)
    validate_stage.main(params_file=params_file)
    for name in params.data:
        data_stage.main(name=name, params_file=params_file)
    for cell in cells(params):
        beta = None if cell.beta is None else str(cell.beta)
        train_stage.main(model=cell.model, dataset=cell.dataset, seed=cell.seed, beta=beta,
                         params_file=params_file, track=True, progress=True)
        evaluate_stage.main(model=cell.model, dataset=cell.dataset, seed=cell.seed, beta=beta,
                            params_file=params_file, track=True)
    report(params_file=params_file)


if __name__ == "__main__":
    app()
