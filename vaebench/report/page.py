"""The report page: ``templates/index.html.j2`` with ``templates/style.css``, filled from a
``Report``. Rendering only; every number comes from the tables and the report's data."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

from vaebench.gradient_results import GradientStudyResult
from vaebench.paper.result import PaperResult
from vaebench.report import tables
from vaebench.report.build import Report, conventions
from vaebench.report.figures import CAPTIONS
from vaebench.theory.records import BUG_CLASSES

PICTURE_CAPTIONS = {
    "samples": "decoder means of 64 draws from the prior",
    "reconstructions": "test images (odd columns) and the decoder mean at their encoder mean",
    "traversals": "one latent at a time from −3 to 3, by decreasing KL",
    "factor_traversals": "one row per ground-truth factor, along its most related latent",
    "latents": "test-set encoder means along the two latents with the most KL",
}
FIGURE_ORDER = ("training_curves", "rate_distortion", "beta_sweep", "kl_per_dim")


def _template(name: str) -> str:
    return resources.files("vaebench.report").joinpath("templates", name).read_text()


def interval_verdict(ours: float, ours_se: float, pub: float, pub_se: float) -> str:
    """'within', 'above' or 'below' from the 95% interval of ours - published."""
    se = math.hypot(ours_se, pub_se)
    if not math.isfinite(se) or not math.isfinite(ours):
        return "no verdict"
    lo, hi = ours - pub - 1.96 * se, ours - pub + 1.96 * se
    return "within" if lo <= 0 <= hi else ("above" if lo > 0 else "below")


def published_table(report: Report, papers: list[PaperResult]) -> tables.Table:
    """Our numbers beside published ones: the study's VAE on Fashion-MNIST (its own protocol)
    and every paper-preset run in reports/paper/ (the published protocol), each with the
    verdict from the interval of the difference."""
    from vaebench.paper.published import published

    pub = published("exemplar-vae-fashion-mnist-vae")
    cols = ["quantity", "published", "ours", "ours − published", "verdict", "protocol differences"]
    rows = []
    for doc in papers:
        for v in doc.variants:
            cmp_, p, nll = v.comparison, v.published, v.nll
            if not (cmp_ and p):
                continue
            seeds = ", ".join(str(m.seed) for m in v.seeds)
            lo, hi = cmp_.interval
            rows.append([
                f"{p.model}: test NLL, {p.dataset} (nats), `vaebench paper` {doc.name}",
                f"{p.nll:.2f}" + (f" ± {p.pm:.2f}" if p.pm else ""),
                f"{tables.pm(nll.mean, nll.half_width)} ({nll.n} seeds: {seeds})",
                f"{tables.fmt(cmp_.difference)} [{tables.fmt(lo)}, {tables.fmt(hi)}]",
                cmp_.verdict + (f" ({cmp_.reason})" if cmp_.reason else ""),
                f"{doc.date}, {doc.machine.get('cpu', '?')}; see reports/paper/{doc.name}.md. "
                + "; ".join(doc.differences)])
    row = report.cells[report.cells["cell"] == "vae-fashion-mnist"]
    if row.empty:
        rows.append([f"{pub.model}: test NLL, Fashion-MNIST (this study)", f"{pub.nll:.2f} ± "
                     f"{pub.pm:.2f}", "not in this study", "—", "—", pub.source])
        return tables.Table(cols, rows)
    r = row.iloc[0]
    n = int(r["n_seeds"])
    se = r["nll_ci95"] / 1.96 if n > 1 else r["nll_se_run"]  # over seeds where there are several
    runs = [x for x in report.runs if x.cell.name == "vae-fashion-mnist"]
    m = runs[0].metrics
    cfg = runs[0].train.get("train_config", {})
    ours_protocol = (f"ours: {cfg.get('arch')} {cfg.get('hidden')}, z = {m.latent_dim}, "
                     f"{m.epochs} epochs, NLL with k = {m.nll_k} on {m.nll_points} of "
                     f"{m.n_test} test points, {n} seed(s); published: {pub.protocol}")
    rows.append([f"{pub.model}: test NLL, Fashion-MNIST (nats), this study's VAE",
                 f"{pub.nll:.2f} ± {pub.pm:.2f}", tables.pm(r["nll"], r["nll_ci95"]),
                 tables.fmt(r["nll"] - pub.nll),
                 interval_verdict(r["nll"], se, pub.nll, pub.pm), ours_protocol])
    return tables.Table(cols, rows)


def burda_table() -> tables.Table:
    from vaebench.paper.published import PUBLISHED

    rows = [[p.model, f"{p.nll:.2f}", str(p.active_units or "—")]
            for p in PUBLISHED.values() if p.key.startswith("burda2016")]
    return tables.Table(["model (training k)", "NLL (−L_5000), MNIST", "active units"], rows)


def gradients_section(doc: GradientStudyResult | None) -> dict[str, Any] | None:
    """The gradient study's part of the page, from reports/gradients/gradients.json."""
    if doc is None:
        return None
    cfg = doc.config
    note = (f"{doc.date}, {doc.cpu}. A β-VAE per β on {cfg.dataset} (MLP "
            f"{cfg.hidden}, z = {cfg.latent_dim}); at each listed Adam step, "
            f"R = {cfg.replicates} paired minibatch estimates (B = {cfg.batch_size}, "
            f"K = {cfg.samples}) of the encoder's ELBO gradient by reparameterization, the "
            "score function, and the score function with a leave-one-out baseline; variance is "
            "the trace of the covariance, intervals are BCa bootstrap over replicates.")
    return {"note": note, "verdict": doc.verdict, "holds": doc.holds,
            "table": tables.gradients_table(doc),
            "figures": [{"src": "gradients/variance.png", "alt": "gradient variance",
                         "caption": "trace variance of each estimator and the ratios to "
                                    "reparameterization, over training, per β"},
                        {"src": "gradients/balance.png", "alt": "recon/KL balance",
                         "caption": "β‖∇KL‖ / ‖∇recon‖ and cos(∇recon, ∇KL) per encoder layer"}]}


def render(report: Report, figures: dict[str, str], pictures: dict[str, list[str]],
           planted: dict | None, machine: dict[str, str], wall: dict[str, str],
           gradients: GradientStudyResult | None = None,
           papers: list[PaperResult] | None = None) -> str:
    """The page. ``figures`` maps figure key -> path and ``pictures`` maps run -> paths, both
    relative to the page; only these are referenced."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    runs = report.runs
    model, selftest = report.family("model"), report.family("self-test")

    def fam(checks) -> dict[str, Any]:
        failed = [c for c in checks if not c.passed]
        return {"total": len(checks), "passed": len(checks) - len(failed), "failed": len(failed),
                "m": sum(c.statistical for c in checks),
                "failed_names": ", ".join(f"{c.name} [{c.run}]" for c in failed)}

    protocol = {}
    for r in runs:
        m = r.metrics
        protocol.setdefault(r.cell.name, f"k = {m.nll_k}, {m.nll_points} points"
                            + (f", unconditional over {m.nll_classes} classes"
                               if m.nll_classes else ""))
    variants = sorted({r.metrics.disentanglement.mig_variant for r in runs
                       if r.metrics.disentanglement})
    figs = [{"src": figures[k], "alt": k.replace("_", " "), "caption": CAPTIONS[k]}
            for k in FIGURE_ORDER if k in figures]
    pics = [(run, [{"src": p, "alt": f"{run} {Path(p).stem}",
                    "caption": PICTURE_CAPTIONS.get(Path(p).stem, Path(p).stem)} for p in paths])
            for run, paths in pictures.items() if paths]
    from vaebench.paper.published import BURDA, published

    burda_protocol = published("burda2016-mnist-1l-vae-k1").protocol
    n_comp = len(report.comparisons)
    return env.from_string(_template("index.html.j2")).render(
        css=_template("style.css"), study=report.params.study.name, n_runs=len(runs),
        n_cells=len(report.cells), seeds=report.params.study.seeds, model=fam(model),
        selftest=fam(selftest), alpha=f"{report.params.theory.alpha:g}", made=report.made,
        machine=machine, wall=wall, conventions=conventions(report),
        summary=tables.summary_table(report.cells, protocol),
        comparisons_note=(
            f"{n_comp} paired comparisons, each model against the VAE on the same test points "
            "and seeds: the mean per-point difference A − B, its 95% interval (seed and "
            "test-point errors combined, Student t over seeds), and a verdict "
            "only where Holm's correction over all comparisons at α = 0.05 keeps it (Holm 1979). "
            "“no detectable difference” is not evidence of equality."),
        comparisons=tables.comparisons_table(report.comparisons),
        model_note=(
            "A model check compares what the code reports for a trained model with an "
            "independent reference — a closed form in float64, a quantity of the data alone, or "
            "the objective written a second time — and fails on a wrong model, objective or "
            "estimator. One-sided claims get one-sided tests; Holm's correction runs over the "
            "statistical model checks only; deterministic ones use their stated tolerance. "
            "‘catches’ names the classes of bug each can find (checked by planting them: "
            "tests/planted_bugs)."),
        model_summary=tables.check_summary(model), model_details=tables.check_details(model),
        planted=tables.planted_bugs_table(planted),
        planted_note=("Each bug was planted alone in a scratch copy of the code and the checks "
                      f"run on it ({len(BUG_CLASSES)} classes); from reports/planted_bugs.json."),
        selftest_note=(
            "Identities of the estimators and the random numbers that hold for any parameters: "
            "Monte Carlo against analytic KL, the ELBO's 1/√S error, L_1 ≤ L_5 ≤ … on common "
            "random numbers, the Alemi bounds, the telescoping TC sum. They catch some code "
            "bugs but are not evidence about the models, so the headline leaves them out. "
            + report.sweep_note),
        selftest_summary=tables.check_summary(selftest),
        selftest_details=tables.check_details(selftest), figures=figs,
        collapse=tables.collapse_table(report.cells, runs),
        disentanglement=tables.disentanglement_table(report.cells, runs),
        mig_variant="; ".join(variants) or "not stated", linear=tables.linear_table(runs),
        published=published_table(report, papers or []), burda_source=BURDA,
        burda_protocol=burda_protocol, burda=burda_table(), runs=tables.runs_table(runs),
        gradients=gradients_section(gradients), pictures=pics)
