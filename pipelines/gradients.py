"""Stage `gradients`: the encoder's ELBO gradient under three estimators, and the recon/KL balance.

Trains one small beta-VAE per beta of ``gradients.betas`` (params.yaml; the schema and its
defaults: ``vaebench.config.GradientStudyConfig``), measures at every step
in ``gradients.checkpoints`` (``vaebench.gradients.measure``), and writes, atomically,
reports/gradients/{gradients.json, gradients.md, variance.png, balance.png}.

    python -m pipelines.gradients [--params params.yaml]
"""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path

import typer

from pipelines.common import REPORTS, ROOT, fail, guarded, load_bundle, params_or_exit
from vaebench.gradient_results import BetaRun, Checkpoint, GradientStudyResult, GroupGradients, interval_text

app = typer.Typer(add_completion=False)
OUT = REPORTS / "gradients"
LABELS = {"reparameterization": "reparameterization",
          "score_function": "score function",
          "score_function_loo": "score function + LOO baseline"}


def load_config(params_file: str):
    """The ``gradients`` block of ``params_file``, validated with the rest of the study."""
    cfg = params_or_exit(params_file).gradients
    if cfg is None:
        fail(f"{params_file}: gradients: missing block (the gradients stage reads it; "
             "params.yaml shows one)")
    return cfg


def run_study(cfg, bundle) -> list[BetaRun]:
    """Train per beta and measure at each checkpoint."""
    import torch

    from vaebench import gradients as G
    from vaebench.inputs import fixed_inputs
    from vaebench.models import build_model, config_class
    from vaebench.nets.linear import set_gemm
    from vaebench.train import as_tensors, data_info

    set_gemm("aten")  # torch.func transforms need plain F.linear (oneDNN runs a custom Function)
    x_train, _ = as_tensors(bundle.x_train, None)
    runs = []
    for bi, beta in enumerate(cfg.betas):
        torch.manual_seed(cfg.seed)
        mcfg = config_class("beta_vae")(  # epochs unused: the study trains by steps
            hidden=cfg.hidden, latent_dim=cfg.latent_dim, beta=float(beta), epochs=1,
            batch_size=cfg.batch_size, lr=cfg.lr)
        model = build_model("beta_vae", mcfg, data_info(bundle), backend="eager")
        pool = fixed_inputs(bundle, bundle.x_train, model.likelihood)
        checkpoints = []
        for step in G.train_snapshots(model, x_train, bundle.kind, bundle.levels, cfg, cfg.seed):
            t0 = time.perf_counter()
            with torch.no_grad():
                _, stats = model.objective(pool, None, cfg.seed + 1)
            groups = G.measure(G.problem_from_model(model), pool, cfg,
                               seed=cfg.seed + 1000 * bi + step)
            checkpoints.append(Checkpoint(step=step, elbo=float(stats["elbo"].mean()),
                                          kl=float(stats["kl"].mean()), groups=groups))
            typer.echo(f"beta {beta:g} step {step}: {time.perf_counter() - t0:.1f} s", err=True)
        runs.append(BetaRun(beta=beta, checkpoints=checkpoints))
    return runs


def objective_norm(g: GroupGradients, beta: float) -> float:
    """||grad recon - beta grad KL|| from the two norms and their cosine."""
    a, b = g.recon_norm, beta * g.kl_norm
    return math.sqrt(max(a * a + b * b - 2 * a * b * g.cos_recon_kl, 0.0))


def render_markdown(result: GradientStudyResult) -> str:
    """reports/gradients/gradients.md from its template (vaebench/report/templates)."""
    from vaebench.gradients import ESTIMATORS
    from vaebench.markdown import render

    return render(
        "gradients.md.j2", r=result, estimators=ESTIMATORS, objective_norm=objective_norm, ci=interval_text,
        g=lambda x: f"{x:g}", g3=lambda x: f"{x:.3g}")


def summarize(runs: list[BetaRun], confidence: float
              ) -> tuple[str, bool, dict[str, tuple[float, float]]]:
    """The verdict on the known result (score function above reparameterization), whether it
    holds at every (beta, step) cell by its lower bound, and the agreement range."""
    from vaebench.gradients import ESTIMATORS

    cells = [ck.group() for run in runs for ck in run.checkpoints]
    ratios = [g.ratio["score_function"] for g in cells]
    lo = min(r[1] for r in ratios)
    est = [r[0] for r in ratios]
    holds = lo > 1
    verdict = (f"Score function over reparameterization, all encoder parameters: "
               f"{min(est):.3g}x to {max(est):.3g}x over {len(est)} (beta, step) cells; the lowest "
               f"{confidence:.0%} lower bound is {lo:.3g}, {'above' if holds else 'not above'} 1. "
               + ("The reparameterization estimator's variance is lower at every cell measured, "
                  f"by at least {math.floor(math.log10(lo))} orders of magnitude (lower bounds)."
                  if holds else "The known result does not hold at every cell."))
    agree = {e: [g.agreement[e] for g in cells] for e in ESTIMATORS[1:]}
    return verdict, holds, {e: (min(v), max(v)) for e, v in agree.items()}


def figures(result: GradientStudyResult, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaebench.gradients import ESTIMATORS
    from vaebench.io import atomic_write

    runs = result.runs
    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 7), squeeze=False,
                             sharey="row")
    for j, run in enumerate(runs):
        steps = [ck.step for ck in run.checkpoints]
        xs = range(len(steps))
        for e in ESTIMATORS:
            v = [ck.group().variance[e] for ck in run.checkpoints]
            axes[0, j].errorbar(xs, [t[0] for t in v], yerr=[[t[0] - t[1] for t in v],
                                [t[2] - t[0] for t in v]], marker="o", capsize=3, label=LABELS[e])
        for e in ESTIMATORS[1:]:
            r = [ck.group().ratio[e] for ck in run.checkpoints]
            axes[1, j].errorbar(xs, [t[0] for t in r], yerr=[[t[0] - t[1] for t in r],
                                [t[2] - t[0] for t in r]], marker="o", capsize=3,
                                label=f"{LABELS[e]} / reparam")
        axes[1, j].axhline(1.0, color="grey", lw=0.8)
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.set_xticks(list(xs), [str(s) for s in steps])
            ax.set_xlabel("Adam step")
        axes[0, j].set_title(f"beta = {run.beta:g}")
    axes[0, 0].set_ylabel("trace Var of the minibatch gradient")
    axes[1, 0].set_ylabel("variance ratio (95% CI)")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out / "variance.png", lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)

    layers = result.layers
    fig, axes = plt.subplots(2, len(layers), figsize=(4.2 * len(layers), 7), squeeze=False)
    for j, layer in enumerate(layers):
        for run in runs:
            steps = [ck.step for ck in run.checkpoints]
            gs = [ck.group(layer) for ck in run.checkpoints]
            xs = range(len(steps))
            b = run.beta
            axes[0, j].plot(xs, [b * g.kl_norm / g.recon_norm for g in gs], marker="o",
                            label=f"beta = {b:g}")
            axes[1, j].plot(xs, [g.cos_recon_kl for g in gs], marker="o", label=f"beta = {b:g}")
            for ax in axes[:, j]:
                ax.set_xticks(list(xs), [str(s) for s in steps])
                ax.set_xlabel("Adam step")
        axes[0, j].set_yscale("log")
        axes[0, j].axhline(1.0, color="grey", lw=0.8)
        axes[0, j].set_title(f"encoder layer `{layer}`")
        axes[1, j].set_ylim(-1, 1)
        axes[1, j].axhline(0.0, color="grey", lw=0.8)
    axes[0, 0].set_ylabel("beta |grad KL| / |grad recon|")
    axes[1, 0].set_ylabel("cos(grad recon, grad KL)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out / "balance.png", lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


@app.command()
def main(params_file: str = typer.Option("params.yaml", "--params")) -> None:
    from vaebench.io import atomic_write_json, atomic_write_text
    from vaebench.machine import machine_info

    cfg = load_config(params_file)
    bundle = guarded(lambda: load_bundle(cfg.dataset))
    if bundle.kind != "image":
        fail(f"gradients.dataset {cfg.dataset!r} is not an image dataset; valid choices: "
             "digits, fashion-mnist, mnist, dsprites")
    t0 = time.perf_counter()
    runs = run_study(cfg, bundle)
    verdict, holds, agreement = summarize(runs, cfg.confidence)
    machine = machine_info(ROOT, gemm="aten")
    result = GradientStudyResult(
        date=dt.datetime.now().isoformat(timespec="seconds"), cpu=machine["cpu"],
        threads=int(machine["torch_threads"]), torch=machine["torch"], machine=machine,
        config=cfg, dim=bundle.dim, n_pool=len(bundle.x_train), estimators=LABELS,
        baseline="leave-one-out mean of the other K-1 draws (Kool, van Hoof & Welling 2019)",
        verdict=verdict, holds=holds, agreement_range=agreement, runs=runs,
        seconds=time.perf_counter() - t0)
    OUT.mkdir(parents=True, exist_ok=True)
    figures(result, OUT)
    atomic_write_json(OUT / "gradients.json", result.model_dump(mode="json"))
    atomic_write_text(OUT / "gradients.md", render_markdown(result))
    typer.echo(verdict)


if __name__ == "__main__":
    app()
