"""The classes of bug the model checks are built to catch, each planted as one source edit.

Every entry names the file, the exact text it replaces (found once), the replacement, and the
model checks (or unit tests) expected to fail. ``harness.py`` plants one at a time in a scratch
copy of the code and runs ``micro_study.py`` there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bug:
    cls: str            # a key of vaebench.theory.records.BUG_CLASSES
    file: str
    old: str
    new: str
    caught_by: tuple[str, ...]  # model checks that must fail (at least one)

    @property
    def patch(self) -> str:
        return f"{self.file}: `{self.old.strip()}` -> `{self.new.strip()}`"


BUGS = (
    Bug("likelihood_constant", "vaebench/likelihoods.py",
        "return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)",
        "return -0.5 * (logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)",
        ("objective_matches_reference", "elbo_gap_equals_kl_to_posterior",
         "is_converges_to_log_px")),
    Bug("kl_formula", "kernels/reference.py",
        "return 0.5 * (m * m + torch.exp(lv) - 1.0 - lv).sum(-1)",
        "return 0.5 * (m * m + torch.exp(lv) - lv).sum(-1)",
        ("objective_matches_reference", "elbo_gap_equals_kl_to_posterior")),
    Bug("reparam_scale", "kernels/reference.py",
        "return mu + torch.exp(0.5 * logvar) * eps",
        "return mu + torch.exp(logvar) * eps",
        ("objective_matches_reference", "elbo_gap_equals_kl_to_posterior")),
    Bug("prior_density", "kernels/reference.py",
        "return -0.5 * (z * z + LOG_2PI).sum(-1)",
        "return -(z * z + LOG_2PI).sum(-1)",
        ("objective_matches_reference", "is_converges_to_log_px")),
    Bug("is_estimator", "vaebench/estimators.py",
        "out[k] = iwae_bound(lw[:k])",
        "out[k] = lw[:k].mean(0)",
        ("is_converges_to_log_px",)),
    Bug("beta_term", "vaebench/objectives.py",
        "return log_px_z - beta * kl",
        "return beta * log_px_z - kl",
        ("objective_matches_reference", "sweep_rate_closed_form")),
    Bug("tc_constants", "vaebench/objectives.py",
        "log_nm = math.log(dataset_size * m)",
        "log_nm = math.log(m)",
        ("objective_matches_reference", "tc_training_estimator_vs_exact")),
    Bug("iwae_detach", "vaebench/objectives.py",
        "w_norm = torch.softmax(log_w, dim=0).detach()",
        "w_norm = torch.softmax(log_w, dim=0)",
        ("objective_gradient_matches_reference",)),
    Bug("test_rebinarized", "vaebench/inputs.py",
        "return preprocess.fixed_binarize(xt, bundle.levels, eval_seed(bundle))",
        "return preprocess.fixed_binarize(xt, bundle.levels, int(torch.randint(0, 2**31, ())))",
        ("test_set_is_the_fixed_one",)),
    Bug("is_fast_path", "vaebench/importance.py",
        "out[ss, ps] = (h * xw[ps]).sum(-1) + xb[ps] - _softplus_rowsum(last(h), compiled)",
        "out[ss, ps] = (h * xw[ps]).sum(-1) - _softplus_rowsum(last(h), compiled)",
        ("is_weights_match_plain_path",)),
    Bug("fused_backward", "vaebench/fused_step.py",
        "half_sigma = torch.exp(0.5 * logvar).mul_(0.5)",
        "half_sigma = torch.exp(0.5 * logvar)",
        ("objective_gradient_matches_reference",)),
)
