"""`vaebench`: the study's stages for people who don't use DVC.

    vaebench data digits
    vaebench train vae digits
    vaebench evaluate vae digits
    vaebench report
    vaebench study            # every stage of params.yaml, in order (no caching)
"""

from __future__ import annotations

import typer

from pipelines import data as data_stage
from pipelines import evaluate as evaluate_stage
from pipelines import train as train_stage

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
app.command("data", help="Prepare one dataset into data/<name>/.")(data_stage.main)
app.command("train", help="Train one (model, dataset) cell.")(train_stage.main)
app.command("evaluate", help="Evaluate one trained cell.")(evaluate_stage.main)


@app.command("report", help="Tables, figures, the theory verdict and reports/index.html.")
def report(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from pipelines import report as report_stage

    report_stage.main(params_file=params_file)


@app.command("study", help="Run every stage of the study in order, without DVC's caching.")
def study(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from pipelines.common import params_or_exit

    params = params_or_exit(params_file)
    for name in params.data:
        data_stage.main(name=name, params_file=params_file)
    cells = [(m, d, None) for m in params.study.models for d in params.study.datasets]
    cells += [("linear", d, None) for d in params.study.linear_datasets]
    cells += [(params.sweep.model, params.sweep.dataset, b) for b in params.sweep.betas]
    for model, dataset, beta in cells:
        train_stage.main(model=model, dataset=dataset, beta=beta, params_file=params_file,
                         track=True, progress=True)
        evaluate_stage.main(model=model, dataset=dataset, beta=beta, params_file=params_file,
                            track=True)
    report(params_file=params_file)


if __name__ == "__main__":
    app()
