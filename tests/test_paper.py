"""Paper presets: the streamed -L_S, the published binarization, the verdict, the gated nets,
the hierarchical model, Burda's preset on the MNIST fixture, and missing data."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Normal

from vaebench import data, objectives
from vaebench.cells import Cell, run_spec
from vaebench.config import load_params, parse_params, read_yaml
from vaebench.models import DataInfo, build_model, config_class
from vaebench.paper import likelihood as lik
from vaebench.paper.config import parse_paper, variants
from vaebench.paper.evaluate import evaluate_paper, vampprior_binarization
from vaebench.paper.published import PUBLISHED, matching
from vaebench.paper.report import best_by_epoch, verdict
from vaebench.paper.result import TInterval
from vaebench.stats import t_interval
from vaebench.tracking import NullTracker
from vaebench.train import train

ROOT = Path(__file__).resolve().parents[1]
IMAGE = DataInfo(784, (1, 28, 28), "image", 10, 100)


# --- the streamed importance-sampled estimate ------------------------------------------------
def gaussian_log_w(mean: torch.Tensor, sd: float):
    """log w ~ N(mean_x, sd^2), a pure function of (x rows, S, seed), like a model's."""
    def fn(x, s, seed):
        g = torch.Generator().manual_seed(seed % (2 ** 63))
        rows = x[:, 0].long()
        return mean[rows] + sd * torch.randn(s, len(rows), generator=g, dtype=torch.float64)
    return fn


def test_streaming_equals_one_shot_over_the_same_draws(monkeypatch):
    monkeypatch.setattr(lik, "SAMPLE_CHUNK", 40)
    monkeypatch.setattr(lik, "POINT_CHUNK", 30)
    n, s = 70, 90  # ragged chunks both ways
    x = torch.arange(n, dtype=torch.float64)[:, None]
    fn = gaussian_log_w(torch.linspace(-5, 5, n, dtype=torch.float64), 1.3)
    per = lik.importance_sampled(fn, x, s, seed=11)
    # the same draws, gathered in one (S, N) array and reduced in one go (float64)
    import kernels

    chunks = math.ceil(s / 40)
    cols = []
    for i, a in enumerate(range(0, n, 30)):
        b = min(a + 30, n)
        cols.append(torch.cat([fn(x[a:b], min(40, s - j * 40), kernels.step_seed(
            11, i * chunks + j, lik.STREAM)) for j in range(chunks)], 0))
    lw = torch.cat(cols, 1)
    assert torch.allclose(per.log_px, torch.logsumexp(lw, 0) - math.log(s), rtol=0, atol=1e-12)
    assert torch.allclose(per.elbo, lw.mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(per.elbo_mc_var, lw.var(0) / s, rtol=0, atol=1e-12)
    w = torch.softmax(lw, 0)
    assert torch.allclose(per.log_px_mc_var, (s * (w * w).sum(0) - 1) / s, rtol=0, atol=1e-12)


def test_l5000_converges_to_the_closed_form_within_its_error():
    """log w ~ N(m, s^2) gives log E w = m + s^2/2: the estimate and its delta-method error."""
    n, m, sd = 200, -90.0, 0.6
    x = torch.arange(n, dtype=torch.float64)[:, None]
    per = lik.importance_sampled(gaussian_log_w(torch.full((n,), m, dtype=torch.float64), sd),
                                 x, 5000, seed=3)
    out = lik.summarize(per)
    z = (-out["nll"] - (m + sd * sd / 2)) / out["nll_mc_se"]
    assert abs(z) < 4, z
    assert abs((out["elbo"] - m) / out["elbo_mc_se"]) < 4
    assert (per.log_px >= per.elbo).all()  # Jensen, draw for draw


def gated_vae(eps: float | None = 1e-5, seed: int = 0):
    torch.manual_seed(seed)
    cfg = config_class("vae").model_validate(dict(
        arch="gated_mlp", hidden=[300, 300], latent_dim=40, epochs=1, batch_size=100, lr=5e-4,
        bernoulli_eps=eps, likelihood="bernoulli"))
    return build_model("vae", cfg, IMAGE, backend="eager")


def test_fused_log_weights_equal_the_models_own():
    model = gated_vae()
    with torch.no_grad():  # large logits, so the clamp at +-11.51 is exercised
        model.decoder.out.bias.copy_(torch.linspace(-30, 30, 784))
    x = (torch.rand(13, 784, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    with torch.no_grad():
        fused = lik.model_log_weights(model)(x, 7, 5)
        own = model.log_weights(x, None, 7, 5)
    assert fused.shape == own.shape == (7, 13)
    assert torch.allclose(fused, own, atol=2e-3, rtol=0)


# --- the nets of the VampPrior -------------------------------------------------------------
def test_gated_nets_are_the_vampprior_function_and_init():
    model = gated_vae()
    layer = model.encoder.body[0]
    x = torch.rand(5, 784, dtype=torch.float64)
    w, b = layer.hg.weight.double(), layer.hg.bias.double()
    h, g = x @ w[:300].T + b[:300], x @ w[300:].T + b[300:]
    assert torch.allclose(layer.double()(x), h / (1 + torch.exp(-g)))
    model.float()
    # N(0, 2 / fan_in) weights: the sample variance of 470,400 entries within 4 SE
    var = model.encoder.body[0].hg.weight.var().item()
    assert abs(var / (2 / 784) - 1) < 4 * math.sqrt(2 / 470_400)
    mu, logvar = model.encode(torch.rand(64, 784) * 50)
    assert logvar.min() >= -6 and logvar.max() <= 2 and mu.shape == (64, 40)


def test_bernoulli_clamp_is_the_vampprior_log_bernoulli():
    model = gated_vae()
    z = torch.randn(9, 40, dtype=torch.float64) * 3
    model.double()
    with torch.no_grad():
        model.decoder.out.bias.copy_(torch.linspace(-40, 40, 784))
        x = (torch.rand(9, 784, dtype=torch.float64) < 0.5).double()
        p = torch.sigmoid(model.decoder(z)).clamp(1e-5, 1 - 1e-5)  # utils/distributions.py
        ref = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
        assert torch.allclose(model.log_px(x, z), ref, rtol=0, atol=1e-8)


# --- the published binarization and the verdict ---------------------------------------------
def test_vampprior_binarization_replays_the_published_calls():
    rng = np.random.default_rng(0)
    x_val = rng.integers(0, 256, (40, 784), dtype=np.uint8)
    x_test = rng.integers(0, 256, (30, 784), dtype=np.uint8)
    np.random.seed(777)  # the published code's global calls, verbatim in effect
    ref_val = np.random.binomial(1, x_val / 255.)
    ref_test = np.random.binomial(1, x_test / 255.)
    val, test = vampprior_binarization(x_val, x_test, 256)
    assert np.array_equal(val, ref_val) and np.array_equal(test, ref_test)
    assert val.dtype == np.float32
    _, other = vampprior_binarization(x_val[:39], x_test, 256)  # the test draw follows val's
    assert not np.array_equal(other, test)


def ours(mean: float, half_width: float = 0.3) -> TInterval:
    """Our NLL over three seeds: its mean and Student-t half-width."""
    return TInterval(mean=mean, sd=0.2, half_width=half_width, n=3)


def test_intervals_and_verdicts():
    vals = [229.1, 229.6, 228.9]
    ci = t_interval(vals, 0.95)
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(vals), scale=stats.sem(vals))
    assert ci.half_width == pytest.approx((hi - lo) / 2)
    assert ci.n == 3 and ci.sd == pytest.approx(np.std(vals, ddof=1))
    half = math.hypot(0.3, 1.959964 * 0.15)
    v = verdict(ours(229.0), 228.7, 0.15, 1.0, 0.95)
    assert v.interval == pytest.approx((0.3 - half, 0.3 + half), abs=1e-5)
    assert v.verdict == "within" and v.reason == ""
    assert verdict(ours(231.0), 228.7, 0.15, 1.0, 0.95).verdict == "above"
    assert verdict(ours(226.0), 228.7, 0.15, 1.0, 0.95).verdict == "below"
    straddles = verdict(ours(229.6), 228.7, 0.15, 1.0, 0.95)  # [0.46, 1.34] crosses +1
    assert straddles.verdict == "inconclusive" and "straddles ±1" in straddles.reason
    assert verdict(ours(229.0, math.nan), 228.7, 0.15, 1.0, 0.95).verdict == "inconclusive"
    assert math.isnan(t_interval([229.0], 0.95).half_width)
    assert best_by_epoch([-9.0, -3.0, -4.0, -2.5, -2.7], every=2) == {"2": -3.0, "4": -2.5,
                                                                       "5": -2.5}


# --- the hierarchical model (Burda et al. 2016) ---------------------------------------------
def hvae(layers: int, k: int = 3, objective: str = "iwae"):
    lat, hid = ([50], [[200, 200]]) if layers == 1 else ([100, 50], [[200, 200], [100, 100]])
    cfg = config_class("hvae").model_validate(dict(
        latent_dims=lat, hidden=hid, k=k, objective=objective, epochs=1, batch_size=20, lr=1e-3))
    torch.manual_seed(0)
    return build_model("hvae", cfg, IMAGE, backend="eager")


def test_hvae_has_burdas_architecture():
    model = hvae(2)
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")]
    # q: 784-200-200-(mean, sigma of 100) | 100-100-100-(50, 50)
    # p: 100-200-200-784 | 50-100-100-(mean, sigma of 100)
    assert shapes == [(200, 784), (200, 200), (200, 200), (100, 100), (100, 100), (100, 100),
                      (200, 100), (200, 200), (784, 200), (100, 50), (100, 100), (200, 100)]
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert not p.any(), name
    head = model.encoder[0].head.weight
    assert head[:100].abs().max() <= math.sqrt(6 / 300) and head[100:].abs().max() <= math.sqrt(6 / 300)


def test_hvae_log_weights_recomputed_by_hand(monkeypatch):
    """log w of the two-layer model from its nets and the recorded z, with torch.distributions."""
    import kernels

    model = hvae(2).double()
    drawn = []
    real = kernels.reparameterize

    def record(*args, **kwargs):
        out = real(*args, **kwargs)
        drawn.append(out[0])
        return out

    monkeypatch.setattr(kernels, "reparameterize", record)
    x = (torch.rand(6, 784, dtype=torch.float64) < 0.3).double()
    with torch.no_grad():
        lw = model.log_weights(x, None, 4, 9)
        z1, z2 = drawn
        def normal(mean, logvar):
            return Normal(mean, torch.exp(0.5 * logvar))
        ref = (Bernoulli(logits=model.decoder[0](z1)).log_prob(x).sum(-1)
               + normal(*model.decoder[1](z2)).log_prob(z1).sum(-1)
               + Normal(0.0, 1.0).log_prob(z2).sum(-1)
               - normal(*model.encoder[0](x)).log_prob(z1).sum(-1)
               - normal(*model.encoder[1](z1)).log_prob(z2).sum(-1))
    assert lw.shape == (4, 6) and torch.allclose(lw, ref, rtol=0, atol=1e-9)
    assert torch.allclose(objectives.k_sample_elbo(lw), lw.mean(0))


# --- Burda's preset on the MNIST fixture; missing data --------------------------------------
def idx(array: np.ndarray) -> bytes:
    return gzip.compress(struct.pack(">BBBB", 0, 0, 8, array.ndim)
                         + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes(), mtime=0)


@pytest.fixture
def mnist_fixture(tmp_path, monkeypatch):
    """60 training and 20 test images in the real IDX gz format under $VAEBENCH_DATA/mnist,
    with the checksum table pointed at them; no network."""
    from vaebench.data import mnist as mnist_mod
    from vaebench.data.fetch import Expected

    rng = np.random.default_rng(5)
    parts = {"train-images": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
             "train-labels": (np.arange(60) % 10).astype(np.uint8),
             "t10k-images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             "t10k-labels": (np.arange(20) % 10).astype(np.uint8)}
    root = tmp_path / "vaebench-data"
    (root / "mnist").mkdir(parents=True)
    table = {}
    for part, array in parts.items():
        blob = idx(array)
        name = mnist_mod.MNIST_FILES[part].filename
        (root / "mnist" / name).write_bytes(blob)
        table[part] = Expected(name, hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(mnist_mod, "MNIST_FILES", table)
    monkeypatch.setenv("VAEBENCH_DATA", str(root))
    return parts


def test_burda_preset_first_steps_on_the_mnist_fixture(mnist_fixture, tmp_path):
    """Every variant of Burda et al.'s Table 1 trains a few steps and gets its -L_S."""
    raw = read_yaml(ROOT / "presets" / "paper-mnist-burda.yaml")
    raw["data"]["mnist"]["val_size"] = 10
    raw["study"]["backend"] = "eager"
    paper = parse_paper(raw)
    data.prepare("mnist", raw["data"]["mnist"], tmp_path / "mnist")
    bundle = data.load(tmp_path / "mnist")
    images = mnist_fixture["train-images"].reshape(60, 784)  # val = the last 10, unshuffled
    assert np.array_equal(bundle.x_train, images[:50]) and np.array_equal(bundle.x_val, images[50:])
    seen = set()
    for name, params in variants(raw, paper):
        params["train"]["hvae"]["epochs"] = 1
        spec = run_spec(parse_params(params), Cell("hvae", "mnist", 0))
        model, state = train(spec, bundle, tmp_path / name, NullTracker(), "fp", progress=False)
        assert state.step == 2  # 50 images in batches of 20
        small = parse_paper({**params, "paper": {**params["paper"], "importance_samples": 8}})
        out = evaluate_paper(model, bundle, small, seed=0)
        assert out["test_points"] == 20 and math.isfinite(out["nll"])
        assert out["nll"] <= -out["elbo"] + 1e-9  # L_S >= the S-sample ELBO, draw for draw
        pub = matching(paper.published, spec.train.model_dump())
        seen.add(None if pub is None else pub.key)
    assert len(variants(raw, paper)) == 12
    assert seen - {None} == {k for k in PUBLISHED if k.startswith("burda2016")}


def test_missing_mnist_stops_at_the_data_stage_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from pipelines import paper as paper_stage

    empty = tmp_path / "nothing-here"
    monkeypatch.setenv("VAEBENCH_DATA", str(empty))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    study, out = tmp_path / "study", tmp_path / "reports"
    with pytest.raises(SystemExit) as info:
        paper_stage.run(ROOT / "presets" / "paper-mnist-burda.yaml", study_dir=study, out=out)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "mnist: cannot obtain 4 of 4 files" in err
    assert f"Place the official files in {empty / 'mnist'}" in err and "download" in err
    assert not study.exists() and not out.exists() and not empty.exists()


def test_paper_presets_validate():
    for name in ("paper-fmnist", "paper-mnist-burda"):
        path = ROOT / "presets" / f"{name}.yaml"
        load_params(path)
        paper = parse_paper(read_yaml(path))
        assert paper.name == name


def test_an_extended_run_equals_an_uninterrupted_one(tmp_path, capsys):
    """`vaebench paper --extend-from`: a run continued from an earlier run's checkpoint (same
    code and settings, fewer epochs) computes what one uninterrupted run computes."""
    from pipelines import paper as paper_stage

    raw = read_yaml(ROOT / "presets" / "paper-fmnist.yaml")
    raw["study"].update(datasets=["digits"], backend="eager")
    raw["data"] = {"digits": {}, "linear-gaussian": {}}
    raw["train"]["vae"].update(hidden=[32, 32], latent_dim=4, batch_size=64, kl_warmup_epochs=3)
    for root in ("a", "b", "c"):
        data.prepare("digits", {}, tmp_path / root / "data" / "digits")
    bundle = data.load(tmp_path / "a" / "data" / "digits")
    checksum = bundle.manifest["arrays"]["sha256"]
    cell = Cell("vae", "digits", 0)

    def spec(epochs, **change):
        r = {**raw, "train": {"vae": {**raw["train"]["vae"], "epochs": epochs, **change}}}
        return parse_params(r), run_spec(parse_params(r), cell)

    run = Path("runs") / "vae-digits" / "seed0" / "train"
    _, short = spec(1)
    _, state = train(short, bundle, tmp_path / "a" / run, NullTracker(),
                     short.fingerprint(checksum), progress=False)
    from vaebench.io import atomic_write_json

    atomic_write_json(tmp_path / "a" / run / "train.json", {
        "train_config": short.train.model_dump(), "early_stopping": state.early_stopping})
    params2, long = spec(3)
    note = paper_stage._with_root(tmp_path / "b", paper_stage._extend, tmp_path / "a" / run,
                                  tmp_path / "b" / run, params2, cell)
    assert "1 epochs" in note
    extended, s_ext = train(long, bundle, tmp_path / "b" / run, NullTracker(),
                            long.fingerprint(checksum), progress=False)
    fresh, s_new = train(long, bundle, tmp_path / "c" / run, NullTracker(), "other", progress=False)
    assert s_ext.resumed_from == 1 and s_ext.epoch == s_new.epoch == 3
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in s_new.history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in s_ext.history] == strip
    for name, value in fresh.state_dict().items():
        assert torch.equal(extended.state_dict()[name], value), name
    params_lr, _ = spec(3, lr=1e-3)  # another setting than epochs: refused, nothing copied
    capsys.readouterr()
    with pytest.raises(SystemExit):
        paper_stage._with_root(tmp_path / "c", paper_stage._extend, tmp_path / "a" / run,
                               tmp_path / "c" / "x", params_lr, cell)
    assert "trained with other lr; only epochs may differ" in capsys.readouterr().err
    assert not (tmp_path / "c" / "x").exists()


def test_a_run_cut_short_says_how_far_its_validation_elbo_still_rose():
    from test_paper_result import paper_result, seed_result, variant

    from vaebench.paper.report import unconverged_note

    def seed(by, stopped=0):
        return seed_result(val_elbo_best_by_epoch={str(e): x for e, x in by.items()},
                           early_stopping=dict(patience=50, warmup_epochs=10, best_value=max(
                               by.values()), best_epoch=max(by), counter=0, stopped_at=stopped))

    by = {10: -250.0, 20: -244.0, 30: -240.0, 40: -238.5}
    note = unconverged_note(paper_result([variant([seed(by), seed({**by, 40: -237.5})])]))
    assert "rose by 2.00 nats (mean over 2 seed(s)) from epoch 30 to epoch 40" in note
    # early stopping ended it: converged
    assert unconverged_note(paper_result([variant([seed(by, stopped=40)])])) is None
    assert unconverged_note(paper_result([variant([seed(by)], verdict="within")])) is None
