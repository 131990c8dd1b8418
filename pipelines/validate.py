"""DVC stage `validate`: check params.yaml once, before every other stage.

Every stage depends on this stage's output, so a bad value in params.yaml is reported first,
by this stage, with the file and the key named (``error: params.yaml: train.vae.lr: ...``),
instead of by whichever data stage DVC happens to run first. The output's content is the same
for every valid params.yaml, so a valid change reruns only the stages that use it.
"""

from __future__ import annotations

import typer

from pipelines.common import RUNS, params_or_exit

app = typer.Typer(add_completion=False)
MARKER = RUNS / "params-valid.txt"


@app.command()
def main(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from vaebench.cells import cells
    from vaebench.io import atomic_write_text

    params = params_or_exit(params_file)
    n = len(cells(params))
    atomic_write_text(MARKER, "params.yaml is valid\n")
    typer.echo(f"{params_file}: valid ({n} runs: {len(params.study.seeds)} seed(s) per cell)")


if __name__ == "__main__":
    app()
