"""The training benchmark's GEMM floor counts the GEMMs a training step really runs; its
compiled minimal loop computes the eager loop's loss and gradients."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.loops import BATCH, PlainVAE, batch_loss, gemm_flops_per_step, plain_loss, step_gemms


def test_gemm_floor_has_the_flops_of_a_training_step():
    """torch's FLOP counter over one forward + backward of the 784-400-20 VAE counts exactly
    the GEMMs of ``step_gemms`` (the first layer's input gradient is never computed)."""
    torch.manual_seed(0)
    model = PlainVAE()
    x = torch.bernoulli(torch.full((BATCH, 784), 0.3))
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar = model(x)
        plain_loss(logits, x, mu, logvar).mean().backward()
    assert counter.get_total_flops() == gemm_flops_per_step()
    assert len(step_gemms()) == 11  # 4 forward, 4 weight gradients, 3 input gradients


def test_paired_ratio_against_scipy_its_verdicts_and_the_order():
    """The paired ratio is the geometric mean of per-repeat ratios of steady epochs (first
    epoch of each run dropped), with scipy's Student-t interval on the log scale; a constant
    ratio gives a zero-width interval, and the verdict reads the whole interval."""
    import math

    import numpy as np
    from scipy import stats

    from benchmarks.loops import interval_verdict, shuffled
    from benchmarks.train_report import paired

    base = [[9.0, 2.0, 2.2], [9.0, 3.0, 3.0], [9.0, 2.5, 2.7]]
    loop = [[1.0, 2.3, 2.3], [1.0, 3.1, 3.5], [1.0, 2.9, 2.9]]
    logs = np.log([2.3 / 2.1, 3.3 / 3.0, 2.9 / 2.6])
    lo, hi = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    iv = paired(loop, base)
    assert math.isclose(iv["ratio"], math.exp(logs.mean()), rel_tol=1e-12)
    assert math.isclose(iv["low"], math.exp(lo), rel_tol=1e-12)
    assert math.isclose(iv["high"], math.exp(hi), rel_tol=1e-12) and iv["n"] == 3
    exact = paired([[1.0, 2.2 * r[1], 2.2 * r[2]] for r in base], base)
    assert math.isclose(exact["low"], 2.2) and math.isclose(exact["high"], 2.2)
    assert interval_verdict({"low": 1.0, "high": 1.1}, 1.1) == "met"
    assert interval_verdict({"low": 1.05, "high": 1.15}, 1.1) == "undecided"
    assert interval_verdict({"low": 1.11, "high": 1.2}, 1.1) == "missed"
    # a speed-up must reach its target: the same intervals, read the other way
    assert interval_verdict({"low": 2.0, "high": 2.4}, 2.0, at_least=True) == "met"
    assert interval_verdict({"low": 1.9, "high": 2.4}, 2.0, at_least=True) == "undecided"
    assert interval_verdict({"low": 1.5, "high": 1.99}, 2.0, at_least=True) == "missed"
    # every repeat's order is a permutation, and the orders differ from repeat to repeat
    names = [f"loop {i}" for i in range(6)]
    orders = [shuffled(names, r) for r in range(4)]
    assert all(sorted(o) == names for o in orders) and len({tuple(o) for o in orders}) > 1


def test_the_compiled_step_computes_the_eager_step_in_float64():
    """``batch_loss`` under torch.compile (the compiled minimal loop) gives the eager loss and
    gradients to float64 rounding; and with the noise given, it is the eager forward's loss for
    the same torch.randn draw (so the two loops differ in compilation alone)."""
    torch.manual_seed(0)
    model = PlainVAE().double()
    x = torch.bernoulli(torch.full((16, 784), 0.3, dtype=torch.float64))
    torch.manual_seed(1)
    logits, mu, logvar = model(x)  # draws eps = torch.randn_like(mu) itself
    drawn = plain_loss(logits, x, mu, logvar).mean()
    torch.manual_seed(1)
    eps = torch.randn(16, 20, dtype=torch.float64)
    eager = batch_loss(model, x, eps)
    assert eager.item() == drawn.item()
    params = list(model.parameters())
    compiled = torch.compile(batch_loss)(model, x, eps)
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=0)
    for g, h in zip(torch.autograd.grad(compiled, params), torch.autograd.grad(eager, params),
                    strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


def test_the_compiled_loop_pays_only_when_its_whole_interval_lies_below_one():
    from benchmarks.train_report import COMPILE_VERDICT, _ratio_cell

    def cell(low, high):
        return _ratio_cell({"ratio": (low * high) ** 0.5, "low": low, "high": high}, 1.0,
                           COMPILE_VERDICT)

    assert cell(0.80, 0.95).endswith("(compile pays)")
    assert cell(1.02, 1.30).endswith("(compile does not pay)")
    assert cell(0.90, 1.10).endswith("(undecided)")


def test_the_compiled_step_benchmarks_the_trainers_objective_to_the_bit():
    """``vaebench_elbo`` with eps drawn from the trainer's stream is the VAE's own objective
    (``model.objective`` at the same seed): the same values and the same gradients, bit for
    bit, so the compiled loop of the training benchmark times vaebench's step and no other."""
    from benchmarks.loops import vaebench_elbo
    from kernels import reference
    from vaebench.models import DataInfo, build_model, config_class

    cfg = config_class("vae")(latent_dim=20, epochs=1, batch_size=BATCH, lr=1e-3)
    info = DataInfo(dim=784, image_shape=(1, 28, 28), kind="image")
    torch.manual_seed(3)
    model = build_model("vae", cfg, info, backend="eager")
    x = torch.bernoulli(torch.full((BATCH, 784), 0.3))
    seed = 2**40 + 7

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    own = model.objective(x, None, seed)[0]
    own_grads = grads(-own.mean())
    eps = reference.standard_normal(seed, (1, BATCH, 20))[0]
    mine = vaebench_elbo(model, x, eps)
    assert torch.equal(mine, own)
    assert all(torch.equal(a, b) for a, b in zip(grads(-mine.mean()), own_grads, strict=True))
    other = vaebench_elbo(model, x, reference.standard_normal(seed + 1, (1, BATCH, 20))[0])
    assert not torch.equal(other, own)  # the comparison sees a different draw


def test_warm_up_counts_the_first_epochs_and_the_break_even():
    """The compiled loop's first epoch over the eager one's (first run apart, later runs by
    their median), the median steady saving, and the epochs it takes to pay, by hand."""
    from benchmarks.train_report import warm_up

    eager = [[2.0, 1.0, 1.0], [2.2, 1.2, 1.2], [2.1, 1.1, 1.1]]
    compiled = [[9.0, 0.8, 0.8], [3.0, 1.0, 1.0], [2.6, 0.8, 0.8]]
    w = warm_up(compiled, eager)
    assert w["first_run_extra_s"] == 7.0
    assert abs(w["warm_extra_s"] - 0.65) < 1e-12  # median of 0.8 and 0.5
    assert abs(w["saved_per_epoch_s"] - 0.2) < 1e-12  # median of 0.2, 0.2, 0.3
    assert abs(w["epochs_to_pay"] - 3.25) < 1e-12
    slower = warm_up([[3.0, 1.5, 1.5]], [[2.0, 1.0, 1.0]])
    assert slower["epochs_to_pay"] is None and slower["saved_per_epoch_s"] == -0.5


def test_stage_cost_pairs_a_fresh_first_epoch_with_the_steady_ones():
    """A stage of E epochs: the fresh process's first epoch plus E - 1 steady epochs of the
    same repeat's loop, compiled over eager; by hand, it pays at 6 epochs and not at 3."""
    from benchmarks.train_report import stage_cost

    result = {"epoch_seconds": {"vaebench loop eager": [[9.0, 2.0, 2.0]] * 3,
                                "vaebench loop compiled": [[20.0, 1.0, 1.0]] * 3},
              "fresh_process_one_epoch_seconds": {"eager": [5.0] * 3, "compiled": [8.0] * 3},
              "study_epochs": {"vae-fashion-mnist": 6}}
    six = stage_cost(result)
    assert abs(six["stage_ratio"]["ratio"] - 13 / 15) < 1e-12  # (8 + 5 * 1) / (5 + 5 * 2)
    assert six["verdict"] == "compile pays" and six["epochs_to_pay"] == 4.0  # 1 + 3 / 1
    result["study_epochs"]["vae-fashion-mnist"] = 3
    three = stage_cost(result)
    assert abs(three["stage_ratio"]["ratio"] - 10 / 9) < 1e-12  # (8 + 2) / (5 + 4)
    assert three["verdict"] == "compile does not pay"


def test_epoch_pairs_pool_the_epochs_side_by_side_leaving_each_runs_first_out():
    """The 1.1x target's ratio: each trainer epoch over the minimal epoch run beside it, pooled
    over runs (each run's first epoch left out), by hand against scipy."""
    import math

    import numpy as np
    from scipy import stats

    from benchmarks.epoch_pairs import epoch_paired

    mine = [[9.0, 3.3, 2.2, 2.6], [8.0, 3.1, 2.9]]
    beside = [[1.0, 3.0, 2.0, 2.5], [7.0, 3.0, 2.5]]
    logs = np.log([3.3 / 3.0, 2.2 / 2.0, 2.6 / 2.5, 3.1 / 3.0, 2.9 / 2.5])
    lo, hi = stats.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    iv = epoch_paired(mine, beside)
    assert iv["n"] == 5 and math.isclose(iv["ratio"], math.exp(logs.mean()), rel_tol=1e-12)
    assert math.isclose(iv["low"], math.exp(lo), rel_tol=1e-12)
    assert math.isclose(iv["high"], math.exp(hi), rel_tol=1e-12)


def test_both_epoch_paired_runs_are_judged_epoch_by_epoch():
    """Each GEMM library's epoch-paired run is paired with the minimal epochs beside it, epoch
    by epoch, not with the minimal loop's runs; the other loops, run by run."""
    from benchmarks.epoch_pairs import epoch_paired
    from benchmarks.train_report import paired, ratios

    mine, beside = [[9.0, 3.3, 2.2, 2.6], [8.0, 3.1, 2.9, 3.0]], [[1.0, 3.0, 2.0, 2.5],
                                                                 [7.0, 3.0, 2.5, 2.6]]
    other, beside_other = [[5.0, 2.0, 2.1, 2.4], [5.0, 2.6, 2.2, 2.3]], [[1.0, 2.0, 2.0, 2.0],
                                                                         [1.0, 2.5, 2.1, 2.0]]
    minimal = [[1.0, 2.0, 2.2], [1.0, 2.4, 2.5]]
    seconds = {"vaebench paired": mine, "minimal paired": beside,
               "vaebench paired other": other, "minimal paired other": beside_other,
               "minimal": minimal, "gemm floor aten": minimal, "gemm floor onednn": minimal}
    r = ratios({"epoch_seconds": seconds, "gemm": {"vaebench": "onednn"},
                "gemm_other": "aten"})["over_minimal"]
    assert r["vaebench paired"] == epoch_paired(mine, beside)
    assert r["vaebench paired other"] == epoch_paired(other, beside_other)
    assert r["minimal paired other"] == paired(beside_other, minimal)


def test_the_step_by_hand_is_judged_against_its_autograd_loop_run_by_run():
    """The bare loop with the backward pass written out is paired with the same loop under
    autograd, repeat by repeat, and its verdict there reads faster or slower."""
    from benchmarks.loops import interval_verdict
    from benchmarks.train_report import BY_HAND_VERDICT, _ratio_cell, paired, ratios

    hand, eager = [[9.0, 2.0, 2.1], [9.0, 1.9, 2.0]], [[9.0, 2.4, 2.5], [9.0, 2.3, 2.2]]
    minimal = [[1.0, 2.0, 2.2], [1.0, 2.4, 2.5]]
    seconds = {"vaebench loop by hand": hand, "vaebench loop eager": eager, "minimal": minimal,
               "gemm floor aten": minimal}
    r = ratios({"epoch_seconds": seconds, "gemm": {"vaebench": "aten"}, "gemm_other": "aten"})
    iv = r["by_hand_over_autograd"]["vaebench loop by hand"]
    assert iv == paired(hand, eager) and iv["ratio"] < 1
    assert r["over_minimal"]["vaebench loop by hand"] == paired(hand, minimal)
    fast = {**iv, "low": 0.8, "high": 0.9}  # a whole interval below 1
    assert interval_verdict(fast, 1.0) == "met"
    assert _ratio_cell(fast, 1.0, BY_HAND_VERDICT).endswith("(faster)")


def test_epoch_added_seconds_is_the_mean_pair_difference_with_scipys_interval():
    import math

    import numpy as np
    from scipy import stats

    from benchmarks.epoch_pairs import epoch_added_seconds

    mine = [[9.0, 3.3, 2.2, 2.6], [8.0, 3.1, 2.9]]
    beside = [[1.0, 3.0, 2.0, 2.5], [7.0, 3.0, 2.5]]
    d = np.array([0.3, 0.2, 0.1, 0.1, 0.4])
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    added = epoch_added_seconds(mine, beside)
    assert added["n"] == 5 and math.isclose(added["seconds"], d.mean(), rel_tol=1e-12)
    assert math.isclose(added["low"], lo, rel_tol=1e-9)
    assert math.isclose(added["high"], hi, rel_tol=1e-9)


def test_step_costs_pair_groups_of_rounds_by_hand():
    """Each variant's blocks summed ``group`` rounds at a time over the minimal loop's sums,
    the rounds that do not fill a group left out."""
    import math

    from benchmarks.step_costs import group_ratios

    blocks = {"minimal": [1.0, 1.0, 2.0, 2.0, 9.0], "trainer": [1.1, 1.3, 2.0, 2.2, 1.0]}
    iv = group_ratios(blocks, 2)
    logs = [math.log(2.4 / 2.0), math.log(4.2 / 4.0)]
    assert iv["trainer"]["n"] == 2
    assert math.isclose(iv["trainer"]["ratio"], math.exp(sum(logs) / 2), rel_tol=1e-12)
    assert iv["minimal"]["ratio"] == 1.0


def test_data_path_pairs_draw_what_the_trainer_draws():
    """Each pair of the data-path benchmark times two ways of one draw: the binarizations are
    exact {0, 1} draws of the block's batches (the fixed and the dynamic sampler), the kept
    buffers receive exactly the fresh arrays' values, and the eps drawn together are the
    trainer's (the benchmark checks them against each seed's own draw)."""
    import numpy as np

    from benchmarks.data_path import PAIRS, VARIANTS, _block_variants
    from vaebench.data import preprocess

    rng = np.random.default_rng(0)
    grey = [rng.integers(0, 256, (BATCH, 784)).astype(np.uint8) for _ in range(3)]
    seeds = [11, 12, 13]
    kept = [np.zeros((BATCH, 784), np.float32) for _ in grey]
    variants = _block_variants(grey, seeds, kept)
    assert set(variants) == set(VARIANTS) == {v for pair in PAIRS.values() for v in pair}
    fresh = variants["philox"]()
    variants["philox kept"]()
    for f, k, g, s in zip(fresh, kept, grey, seeds, strict=True):
        assert np.array_equal(f, k) and np.array_equal(k, preprocess.philox_bernoulli_grey(g, 256, s))
    for b, g in zip(variants["pcg64"](), grey, strict=True):
        assert b.shape == g.shape and set(np.unique(b)) <= {0.0, 1.0}
        assert (b[g == 0] == 0).all() and (b[g == 255] == 1).all()
    assert len(variants["eps together"]()) == len(seeds)


def test_the_stretch_is_judged_against_the_floor_beside_it_and_split_by_bandwidth():
    """With GEMM-floor epochs run beside the epoch-paired runs, the 1.8x stretch pairs each
    vaebench epoch with the floor epoch beside it; ``by_bandwidth`` splits those pairs at the
    median copy probe (each run's first pair left out), each half's ratio its own geometric
    mean, checked here against pairs built by hand."""
    import math

    from benchmarks.epoch_pairs import by_bandwidth, epoch_paired
    from benchmarks.train_report import ratios

    mine = [[9.0, 3.0, 2.0, 3.3], [8.0, 2.2, 3.6, 2.0]]
    floor = [[1.0, 1.5, 1.25, 1.5], [1.0, 1.25, 1.5, 1.25]]
    gbs = [[5.0, 9.0, 20.0, 8.0], [30.0, 21.0, 7.0, 19.0]]  # low, high, low; high, low, high
    # high-bandwidth pairs: 2.0/1.25, 2.2/1.25, 2.0/1.25; low: 3.0/1.5, 3.3/1.5, 3.6/1.5
    adam = [[0.0, 900.0, 300.0, 800.0], [0.0, 310.0, 1000.0, 290.0]]  # beside the same pairs
    split = by_bandwidth(mine, floor, gbs, adam)
    assert split["high"]["n"] == 3 and split["low"]["n"] == 3
    assert split["high"]["adam_us"] == 300.0 and split["low"]["adam_us"] == 900.0
    assert math.isclose(split["high"]["ratio"], (1.6 * 1.76 * 1.6) ** (1 / 3), rel_tol=1e-12)
    assert math.isclose(split["low"]["ratio"], (2.0 * 2.2 * 2.4) ** (1 / 3), rel_tol=1e-12)
    assert split["high"]["gbs"] == 20.0 and split["low"]["gbs"] == 8.0
    assert (split["high"]["epoch_s"], split["high"]["floor_s"]) == (2.0, 1.25)
    assert (split["low"]["epoch_s"], split["low"]["floor_s"]) == (3.3, 1.5)
    seconds = {"vaebench paired": mine, "gemm floor paired": floor, "minimal paired": floor,
               "minimal": floor, "gemm floor aten": floor, "gemm floor onednn": floor}
    r = ratios({"epoch_seconds": seconds, "gemm": {"vaebench": "onednn"}, "gemm_other": "aten",
                "copy_gbs_paired": {"vaebench paired": gbs},
                "adam_us_paired": {"vaebench paired": adam}})
    assert r["over_gemm_floor"]["vaebench paired"] == epoch_paired(mine, floor)
    assert r["over_gemm_floor_by_bandwidth"]["vaebench paired"] == split


def test_the_committed_pages_are_rendered_from_the_committed_measurements():
    """Each committed train_throughput page is what ``render`` makes of its json's raw
    measurements, the ratios recomputed from them (``--rerender``): no number on the page is
    stale or typed by hand, and a page of an older run still renders as it was."""
    import json
    from pathlib import Path

    from benchmarks.train_report import ratios, render

    pages = sorted((Path(__file__).resolve().parents[1] / "reports" / "benchmarks")
                   .glob("train_throughput-*.json"))
    assert pages, "no committed train_throughput page"
    for path in pages:
        result = json.loads(path.read_text())
        result.update(ratios(result))
        assert render(result, result["gemm"]["vaebench"], 0) == path.with_suffix(".md").read_text(), path.name
