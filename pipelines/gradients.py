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
from dataclasses import asdict
from pathlib import Path

import typer

from pipelines.common import REPORTS, ROOT, fail, guarded, load_bundle, params_or_exit

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


def run_study(cfg, bundle) -> list[dict]:
    """Train per beta and measure at each checkpoint; returns the JSON-ready runs."""
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
            checkpoints.append({"step": step, "elbo": float(stats["elbo"].mean()),
                                "kl": float(stats["kl"].mean()),
                                "groups": [asdict(g) for g in groups]})
            typer.echo(f"beta {beta:g} step {step}: {time.perf_counter() - t0:.1f} s", err=True)
        runs.append({"beta": beta, "checkpoints": checkpoints})
    return runs


def _all(ck: dict) -> dict:
    return next(g for g in ck["groups"] if g["group"] == "all")


def _ci(t) -> str:
    return f"{t[0]:.3g} [{t[1]:.3g}, {t[2]:.3g}]"


def objective_norm(g: dict, beta: float) -> float:
    """||grad recon - beta grad KL|| from the two norms and their cosine."""
    a, b = g["recon_norm"], beta * g["kl_norm"]
    return math.sqrt(max(a * a + b * b - 2 * a * b * g["cos_recon_kl"], 0.0))


def render_markdown(result: dict) -> str:
    from vaebench.gradients import ESTIMATORS

    cfg = result["config"]
    conf = f"{cfg['confidence']:.0%}"
    lines = [
        "# The encoder's ELBO gradient: estimator variance and the reconstruction/KL balance",
        "",
        f"{result['date']}, {result['cpu']}, {result['threads']} threads, torch {result['torch']}; "
        f"stage time {result['seconds']:.0f} s (`python -m pipelines.gradients`).",
        "",
        f"Model: beta-VAE, MLP {'-'.join(map(str, [result['dim'], *cfg['hidden'], cfg['latent_dim']]))}"
        f", Bernoulli decoder, trained on `{cfg['dataset']}` ({result['n_pool']} training points, "
        f"dynamically binarized) with Adam {cfg['lr']:g}, batch {cfg['batch_size']}, one model "
        "per beta, measured at the listed Adam steps (step 0: the initialization).",
        "",
        f"One replicate is one minibatch estimate of grad_phi beta-ELBO for the encoder: "
        f"B = {cfg['batch_size']} points drawn afresh from the training set (binarized once) "
        f"and K = {cfg['samples']} draws of eps per point; the same draws feed the three "
        f"estimators (paired), R = {cfg['replicates']} replicates per checkpoint. The KL "
        "gradient is exact in all three; they differ in the estimate of grad E_q log p(x|z):",
        "",
        "- **reparameterization**: the pathwise gradient through z = mu + sigma eps "
        "(Kingma & Welling 2014; Rezende et al. 2014);",
        "- **score function**: (1/K) sum_k log p(x|z_k) grad log q(z_k|x), z_k held fixed "
        "(Williams 1992; `kernels.log_q_at`);",
        "- **score function + LOO baseline**: log p(x|z_k) minus the mean of the other K-1 "
        "draws' log p(x|z_j) (Kool, van Hoof & Welling 2019; as in VIMCO, Mnih & Rezende 2016).",
        "",
        "Variance: the trace of the covariance of one replicate (sum over parameters), unbiased "
        f"over the R replicates. Intervals: {conf} bootstrap BCa over replicates "
        f"({cfg['bootstrap']} resamples; paired for ratios).",
        "",
        "## Variance of the minibatch gradient estimate, all encoder parameters",
        "",
        "| beta | step | train ELBO | Var reparam | Var score fn | Var score fn + LOO | "
        f"score fn / reparam [{conf} CI] | score fn + LOO / reparam [{conf} CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        for ck in run["checkpoints"]:
            g = _all(ck)
            v = g["variance"]
            lines.append(
                f"| {run['beta']:g} | {ck['step']} | {ck['elbo']:.2f} | "
                + " | ".join(f"{v[e][0]:.3g}" for e in ESTIMATORS)
                + f" | {_ci(g['ratio']['score_function'])} | {_ci(g['ratio']['score_function_loo'])} |")
    lines += ["", result["verdict"], "",
              "Agreement in mean, a check of unbiasedness on the real model: R ||mean(g_e - "
              "g_reparam)||^2 / tr Var(g_e - g_reparam) is about 1 when both estimators have the "
              "same mean (it grows like R when they do not). Over all checkpoints: "
              + "; ".join(f"{LABELS[e]} {lo:.2f} to {hi:.2f}"
                          for e, (lo, hi) in result["agreement_range"].items()) + ".",
              "",
              "## Reconstruction against KL, per encoder layer",
              "",
              "grad recon: the mean of the reparameterization replicates of grad E_q log p(x|z) "
              "(per point, averaged over the training set); grad KL: exact. cos > 0 means that "
              "raising the reconstruction term raises the KL too: the two terms pull the encoder "
              "in opposite directions of the objective recon - beta KL.",
              "",
              "The last columns: the norm of the whole gradient of the objective, "
              "grad recon - beta grad KL, against that of grad recon (0 at a stationary point, "
              "where beta grad KL = grad recon), and the score function's variance ratio for the "
              "layer.",
              "",
              "| beta | step | layer | params | norm grad recon | beta x norm grad KL | ratio "
              "| cos(grad recon, grad KL) | norm grad objective / norm grad recon "
              "| score fn / reparam |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        for ck in run["checkpoints"]:
            for g in ck["groups"]:
                if g["group"] == "all":
                    continue
                b = run["beta"]
                lines.append(
                    f"| {b:g} | {ck['step']} | `{g['group']}` | {g['size']} | "
                    f"{g['recon_norm']:.3g} | {b * g['kl_norm']:.3g} | "
                    f"{b * g['kl_norm'] / g['recon_norm']:.2f} | {g['cos_recon_kl']:.3f} | "
                    f"{objective_norm(g, b) / g['recon_norm']:.2f} | "
                    f"{g['ratio']['score_function'][0]:.3g} |")
    lines += ["", "Figures: `variance.png` (variance and ratios over training, per beta), "
              "`balance.png` (beta x norm grad KL / norm grad recon and the cosine, per layer).", ""]
    return "\n".join(lines)


def summarize(runs: list[dict], confidence: float) -> tuple[str, dict]:
    """The verdict on the known result, from the intervals, and the agreement range."""
    from vaebench.gradients import ESTIMATORS

    lows = [_all(ck)["ratio"]["score_function"] for run in runs for ck in run["checkpoints"]]
    lo = min(r[1] for r in lows)
    est = [r[0] for r in lows]
    cmp = "above" if lo > 1 else "not above"
    verdict = (f"Score function over reparameterization, all encoder parameters: "
               f"{min(est):.3g}x to {max(est):.3g}x over {len(est)} (beta, step) cells; the lowest "
               f"{confidence:.0%} lower bound is {lo:.3g}, {cmp} 1. "
               + ("The reparameterization estimator's variance is lower at every cell measured, "
                  f"by at least {math.floor(math.log10(lo))} orders of magnitude (lower bounds)."
                  if lo > 1 else "The known result does not hold at every cell."))
    agree = {e: [_all(ck)["agreement"][e] for run in runs for ck in run["checkpoints"]]
             for e in ESTIMATORS[1:]}
    return verdict, {e: (min(v), max(v)) for e, v in agree.items()}


def figures(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaebench.gradients import ESTIMATORS
    from vaebench.io import atomic_write

    runs = result["runs"]
    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 7), squeeze=False,
                             sharey="row")
    for j, run in enumerate(runs):
        steps = [ck["step"] for ck in run["checkpoints"]]
        xs = range(len(steps))
        for e in ESTIMATORS:
            v = [_all(ck)["variance"][e] for ck in run["checkpoints"]]
            axes[0, j].errorbar(xs, [t[0] for t in v], yerr=[[t[0] - t[1] for t in v],
                                [t[2] - t[0] for t in v]], marker="o", capsize=3, label=LABELS[e])
        for e in ESTIMATORS[1:]:
            r = [_all(ck)["ratio"][e] for ck in run["checkpoints"]]
            axes[1, j].errorbar(xs, [t[0] for t in r], yerr=[[t[0] - t[1] for t in r],
                                [t[2] - t[0] for t in r]], marker="o", capsize=3,
                                label=f"{LABELS[e]} / reparam")
        axes[1, j].axhline(1.0, color="grey", lw=0.8)
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.set_xticks(list(xs), [str(s) for s in steps])
            ax.set_xlabel("Adam step")
        axes[0, j].set_title(f"beta = {run['beta']:g}")
    axes[0, 0].set_ylabel("trace Var of the minibatch gradient")
    axes[1, 0].set_ylabel("variance ratio (95% CI)")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out / "variance.png", lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)

    layers = [g["group"] for g in runs[0]["checkpoints"][0]["groups"] if g["group"] != "all"]
    fig, axes = plt.subplots(2, len(layers), figsize=(4.2 * len(layers), 7), squeeze=False)
    for j, layer in enumerate(layers):
        for run in runs:
            steps = [ck["step"] for ck in run["checkpoints"]]
            gs = [next(g for g in ck["groups"] if g["group"] == layer) for ck in run["checkpoints"]]
            xs = range(len(steps))
            b = run["beta"]
            axes[0, j].plot(xs, [b * g["kl_norm"] / g["recon_norm"] for g in gs], marker="o",
                            label=f"beta = {b:g}")
            axes[1, j].plot(xs, [g["cos_recon_kl"] for g in gs], marker="o", label=f"beta = {b:g}")
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
    verdict, agreement = summarize(runs, cfg.confidence)
    machine = machine_info(ROOT, gemm="aten")
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "cpu": machine["cpu"],
        "threads": int(machine["torch_threads"]), "torch": machine["torch"], "machine": machine,
        "config": cfg.model_dump(), "dim": bundle.dim, "n_pool": len(bundle.x_train),
        "estimators": LABELS, "baseline": "leave-one-out mean of the other K-1 draws "
        "(Kool, van Hoof & Welling 2019)", "verdict": verdict,
        "agreement_range": agreement, "runs": runs,
        "seconds": time.perf_counter() - t0,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    figures(result, OUT)
    atomic_write_json(OUT / "gradients.json", result)
    atomic_write_text(OUT / "gradients.md", render_markdown(result))
    typer.echo(verdict)


if __name__ == "__main__":
    app()
