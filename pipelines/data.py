"""DVC stage `data@<name>`: prepare one dataset into data/<name>/ (arrays.npz + manifest.json)."""

from __future__ import annotations

import typer

from pipelines.common import DATA, guarded, params_or_exit

app = typer.Typer(add_completion=False)


@app.command()
def main(name: str = typer.Argument(..., help="dataset name, a key of `data` in params.yaml"),
         params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from vaebench import data
    from vaebench.config import ConfigError

    params = params_or_exit(params_file)

    def run() -> None:
        if name not in params.data:
            raise ConfigError(f"dataset: unknown dataset {name!r}; valid choices: "
                              + ", ".join(params.data))
        manifest = data.prepare(name, params.data[name], DATA / name)
        sizes = manifest.get("splits", {})
        typer.echo(f"{name}: prepared in {DATA / name} {sizes}")

    guarded(run)


if __name__ == "__main__":
    app()
