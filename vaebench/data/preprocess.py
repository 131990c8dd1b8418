"""Pure preprocessing functions applied by the train and evaluate stages.

Prepared image data are stored as integer grey levels x in {0, ..., L-1} (L = ``levels``). The
decoder's likelihood decides what the model sees:

- Bernoulli decoder: binary targets. Training uses dynamic binarization, a fresh Bernoulli draw with
  p = x/(L-1) at every pass (Burda, Grosse & Salakhutdinov 2016, section 5.1); the test set is
  binarized once with a fixed seed (Norouzi et al. 2020, Exemplar VAE protocol).
- Gaussian (or any continuous) decoder: uniform dequantization y = (x + u)/L, u ~ U[0, 1)^D, so that
  a density on [0, 1)^D can be turned into a bound on the probability of the discrete x
  (Theis, van den Oord & Bethge 2016, section 3.1); see :func:`dequantization_log_correction`.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it, so that preparing data (which never
# touches torch) does not pay for importing it.


def check_grey(x, levels: int, name: str = "x") -> None:
    """Raise unless ``x`` (numpy or torch) holds integer grey levels in 0..levels-1."""
    _check_levels(levels)
    _check_grey(x, levels, name)


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")  # an object cannot be a tensor unless torch is imported
    return torch is not None and isinstance(x, torch.Tensor)


def _check_levels(levels: int) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 2:
        raise ValueError(f"levels={levels!r} is invalid; it must be an integer >= 2")


def _check_grey(x, levels: int, name: str = "x") -> None:
    """Require integer grey levels in [0, levels - 1] (catches already-scaled float inputs)."""
    if _is_tensor(x):
        import torch

        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer grey levels, got dtype {x.dtype}")
        lo, hi = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
    elif isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"{name} must hold integer grey levels, got dtype {x.dtype}")
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if lo < 0 or hi > levels - 1:
        raise ValueError(
            f"{name} has grey levels {lo}..{hi}, outside 0..{levels - 1} (levels={levels})"
        )


def to_unit(x, levels: int):
    """Scale grey levels to [0, 1]: x / (levels - 1) as float32 (numpy -> numpy, torch -> torch)."""
    _check_levels(levels)
    _check_grey(x, levels)
    if _is_tensor(x):
        import torch

        return x.to(torch.float32) / (levels - 1)
    return x.astype(np.float32) / np.float32(levels - 1)


def _raw_words(rng: np.random.Generator, size: int) -> np.ndarray:
    """``rng.bytes(size)`` as the leading bytes of a uint64 array, zero-padded to a whole
    word, leaving ``rng`` in the state ``bytes`` leaves it in.

    ``Generator.bytes`` draws ceil(size / 4) 32-bit words, each 64-bit output of the bit
    generator giving its low word first. When that count is even, the same bytes are the
    little-endian bytes of ceil(size / 8) raw 64-bit outputs, and no half-used word is left
    buffered: ``random_raw`` gives them in a third of the time (20 us against 50 us for a
    128 x 784 batch), its padding bytes being raw bytes too. Otherwise ``bytes`` itself
    (which, asked for no bytes, still draws a 32-bit word).
    """
    words32 = -(-size // 4)
    pcg64 = isinstance(rng.bit_generator, np.random.PCG64)  # low word first, then high
    if size and words32 % 2 == 0 and np.little_endian and pcg64:
        return rng.bit_generator.random_raw(words32 // 2)
    words = np.zeros(-(-size // 8), np.uint64)
    words.view(np.uint8)[:size] = np.frombuffer(rng.bytes(size), np.uint8)
    return words


def _bernoulli_255(rng: np.random.Generator, grey: np.ndarray) -> np.ndarray:
    """``bernoulli_grey`` for 8-bit data: flat uint8 grey levels in, flat float32 {0, 1} out.

    r is ``rng.bytes(grey.size)`` with every 255 replaced, in order, by a fresh draw of
    ``rng.integers(0, 255, dtype=uint8)``; the draw is [r < grey]. The compare and the search
    for 255s run in one compiled pass (``binarize_cpu.compare_bytes``), 0.1 ms per 128 x 784
    batch against 0.2 ms for numpy's or torch's four array passes.
    """
    from vaebench.data.binarize_cpu import compare_bytes

    words = _raw_words(rng, grey.size)
    out = np.empty(grey.size, np.float32)
    redraw = np.empty(grey.size, np.intp)
    count = compare_bytes(words, grey, out, redraw)
    if count:
        at = redraw[:count]
        out[at] = rng.integers(0, 255, count, dtype=np.uint8) < grey[at]
    return out


def bernoulli_grey(grey: np.ndarray, levels: int, rng: np.random.Generator) -> np.ndarray:
    """Exact Bernoulli(grey / (levels - 1)) draws as float32 {0, 1}: [r < grey], r ~ U{0..levels-2}.

    P(r < x) = x / (levels - 1) holds exactly for every integer x in 0..levels-1: the
    probability is never rounded to a float. For 8-bit data (levels = 256) r is a raw random
    byte, with the bytes equal to 255 (one in 256) replaced by fresh draws from U{0..254},
    which leaves r uniform on 0..254 (four times cheaper than bounded integers); otherwise r
    comes from numpy's bounded integers (Lemire's method).
    """
    n = levels - 1
    if n == 255:
        flat = np.ascontiguousarray(grey, dtype=np.uint8).reshape(-1)  # levels 0..255 fit
        return _bernoulli_255(rng, flat).reshape(grey.shape)
    r = rng.integers(0, n, grey.shape, dtype=np.uint8 if n <= 256 else np.int64)
    return (r < grey).astype(np.float32)


def philox_bernoulli_grey(grey: np.ndarray, levels: int, seed: int,
                          out: np.ndarray | None = None) -> np.ndarray:
    """Exact Bernoulli(grey / (levels - 1)) draws as float32 {0, 1}, pixel j's a pure function
    of (seed, j): [r_j % n < grey_j] with n = levels - 1, r_j uniform on 0..n-1 exactly.

    Under the Philox key of ``seed`` (``kernels.reference.philox_key``), counter (i, 0, 0)
    gives 16 little-endian bytes, read in order as units: bytes for n <= 256, 32-bit words
    otherwise (R = 256 or 2**32 values). Pixel j takes unit j; a unit >= n * floor(R / n) is
    replaced by the first unit below it among those of counters (j, 1, t), t = 0, 1, ...
    (``binarize_cpu.fix_philox_redraws``), which leaves r_j uniform. For 8-bit data the
    replaced units are the bytes 255. ``out``: a C-contiguous float32 array of grey's shape to
    write the draws to (returned), else a new one.
    """
    from kernels.reference import philox_key
    from vaebench.data import binarize_cpu

    n = levels - 1
    if n > 1 << 32:
        raise ValueError(f"levels={levels} is too many for the Philox sampler; at most 2**32 + 1")
    flat = np.ascontiguousarray(grey).reshape(-1)
    unit = np.uint8 if n <= 256 else np.uint32
    limit = ((1 << 8 * np.dtype(unit).itemsize) // n) * n
    k0, k1 = philox_key(seed)
    words = np.empty(4 * -(-flat.size * np.dtype(unit).itemsize // 16), np.uint32)
    binarize_cpu.philox_words(k0, k1, words)
    if out is None:
        out = np.empty(np.shape(grey), np.float32)
    elif out.shape != np.shape(grey) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {np.shape(grey)}, "
                         f"got {out.dtype} {out.shape}")
    result, out = out, out.reshape(-1)
    redraw = np.empty(flat.size, np.intp)
    if n == 255:  # 8-bit data: the compare and the search for 255s a word at a time
        count = binarize_cpu.compare_bytes(words.view(np.uint64), flat.astype(np.uint8, copy=False),
                                           out, redraw)
    else:
        count = binarize_cpu.compare_units(words.view(unit), flat, n, limit, out, redraw)
    if count:
        binarize_cpu.fix_philox_redraws(redraw[:count], flat, n, limit, k0, k1,
                                        np.empty(16 // np.dtype(unit).itemsize, unit), out)
    return result


def dynamic_binarize(x: torch.Tensor, levels: int, seed: int, *, check: bool = True,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """A fresh Bernoulli(x / (levels - 1)) draw for one minibatch, float32 {0, 1}.

    Dynamic binarization (Burda, Grosse & Salakhutdinov 2016, sec. 5.1): every pass over the
    data sees a new draw. The draw is a pure function of (x, seed), sampled exactly by
    ``philox_bernoulli_grey``; the trainer passes a new seed every step (``kernels.step_seed``),
    so a resumed run draws exactly what an uninterrupted one would have. ``check=False`` skips
    the grey-level range check, for data already checked. ``out``: a contiguous float32 CPU
    tensor of x's shape to write the draws to, for x on the CPU (the trainer's lookahead keeps
    its buffers from block to block, ``vaebench.lookahead``).
    """
    if not _is_tensor(x):
        raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
    _check_levels(levels)
    if check:
        _check_grey(x, levels)
    import torch

    if out is not None:
        if x.device.type != "cpu" or out.device.type != "cpu":
            raise ValueError(f"out is for x on the CPU; x is on {x.device}, out on {out.device}")
        philox_bernoulli_grey(x.numpy(), levels, seed, out=out.numpy())
        return out
    grey = x.cpu().numpy()
    return torch.from_numpy(philox_bernoulli_grey(grey, levels, seed)).to(x.device)


def fixed_binarize(x, levels: int, seed: int):
    """Bernoulli(x / (levels - 1)) drawn once with numpy.random.default_rng(seed); float32 {0, 1}.

    Binarize the whole evaluation set in one call (Exemplar VAE protocol, Norouzi et al. 2020): the
    noise depends only on (seed, position), so the result is the same for numpy input, CPU or GPU
    tensors; calling it per minibatch with one seed would reuse the same noise in every batch.
    """
    _check_levels(levels)
    _check_grey(x, levels)
    return _seeded_bernoulli(x, levels, seed)


def _seeded_bernoulli(x, levels: int, seed: int):
    """``bernoulli_grey`` with numpy.random.default_rng(seed); numpy in, numpy out; a tensor
    in, a tensor on its device out."""
    rng = np.random.default_rng(seed)
    if not _is_tensor(x):
        return bernoulli_grey(np.asarray(x), levels, rng)
    import torch

    grey = x.cpu().numpy()
    return torch.from_numpy(bernoulli_grey(grey, levels, rng)).to(x.device)


@lru_cache(maxsize=32)
def _bin_bounds(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per level x, the smallest and largest float32 y with x <= y * levels < x + 1 (exactly).

    Products of a float32 (24-bit significand) and levels < 2**29 are exact in float64.
    """
    lower = np.empty(levels, np.float32)
    upper = np.empty(levels, np.float32)
    for x in range(levels):
        lo = np.float32(x / levels)
        while float(lo) * levels < x:
            lo = np.nextafter(lo, np.float32(np.inf))
        hi = np.float32((x + 1) / levels)
        while float(hi) * levels >= x + 1:
            hi = np.nextafter(hi, np.float32(-np.inf))
        lower[x], upper[x] = lo, hi
    return lower, upper


def dequantize(
    x: torch.Tensor, levels: int, generator: torch.Generator | None = None, *, check: bool = True
) -> torch.Tensor:
    """Uniform dequantization y = (x + u) / levels, u ~ U[0, 1), float32 (Theis et al. 2016, 3.1).

    The float32 result is clamped to its level's interval, so y lies in [0, 1) and
    floor(y * levels) == x holds exactly (float32 rounding could otherwise reach (x + 1)/levels).
    """
    if not _is_tensor(x):
        raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
    import torch

    _check_levels(levels)
    if check:
        _check_grey(x, levels)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    y = (x.to(torch.float32) + u) / levels
    lower, upper = _bin_bounds(int(levels))
    index = x.to(torch.int64)
    lo = torch.from_numpy(lower).to(x.device)[index]
    hi = torch.from_numpy(upper).to(x.device)[index]
    return torch.minimum(torch.maximum(y, lo), hi)


def dequantization_log_correction(dim: int, levels: int) -> float:
    """D log L nats: the change of variables between [0, 1)^D and the integer grid.

    Let y = (x + u)/L with u ~ U[0, 1)^D, and p a density on [0, 1)^D. The discrete model
    P(x) = integral of p over the cube [x/L, (x+1)/L)^D, whose volume is L^-D, so Jensen's
    inequality (Theis, van den Oord & Bethge 2016, section 3.1, rescaled by 1/L) gives

        log P(x) >= E_u[log p((x + u)/L)] - D log L.

    Sign convention: this function returns the positive number D log L. Subtract it from a
    log-density on [0, 1)^D (equivalently, add it to the negative log-density) to obtain a lower
    bound on log P(x) (an upper bound on the discrete NLL); bits/dim = (NLL + D log L)/(D ln 2).
    """
    _check_levels(levels)
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"dim={dim!r} is invalid; it must be a positive integer")
    return float(dim) * math.log(levels)


def preprocessing_record(kind: str, levels: int | None, dim: int, seed: int) -> dict:
    """Describe, for the manifest, which preprocessings apply to a data set."""
    if kind == "continuous":
        return {
            "stored": "float32 values, used as they are",
            "applies": ["none"],
            "by_decoder": {"gaussian": {"train": "none", "eval": "none"}},
        }
    return {
        "stored": f"uint8 grey levels 0..{levels - 1}, flattened C*H*W row-major",
        "applies": ["to_unit", "dynamic_binarize", "fixed_binarize", "dequantize"],
        "functions": {
            "to_unit": "vaebench.data.preprocess.to_unit: x/(levels-1) in [0, 1]",
            "dynamic_binarize": "vaebench.data.preprocess.dynamic_binarize: "
            "Bernoulli(x/(levels-1)), a fresh draw every training step, 1 iff r < x with "
            "r ~ U{0, ..., levels-2} from Philox-4x32 keyed by kernels.step_seed(study seed, "
            "step) (Burda et al. 2016)",
            "fixed_binarize": "vaebench.data.preprocess.fixed_binarize: Bernoulli(x/(levels-1))"
            " drawn once with a fixed seed (Exemplar VAE protocol)",
            "bernoulli_grey": "vaebench.data.preprocess.bernoulli_grey: the exact sampler of "
            "fixed_binarize, 1 iff r < x with r ~ U{0, ..., levels-2} from numpy's PCG64",
            "dequantize": "vaebench.data.preprocess.dequantize: (x+u)/levels, u~U[0,1)",
        },
        "by_decoder": {
            "bernoulli": {"train": "dynamic_binarize", "eval": "fixed_binarize",
                          "fixed_binarize_seed": seed},
            "gaussian": {"train": "dequantize", "eval": "dequantize",
                         "log_correction_nats": dequantization_log_correction(dim, levels),
                         "log_correction": "log P(x) >= log p(y) - D log(levels) "
                                           "(Theis et al. 2016)"},
        },
        "binary_levels": levels == 2,
    }


def fixed_test_digests(kind: str, levels: int | None, x_test, seed: int) -> dict[str, str]:
    """SHA-256 of the test set as every evaluation must see it, per decoder: binarized once
    (Bernoulli) or dequantized once (Gaussian) with the dataset's seed, float32 row-major.

    The data stage records them in the manifest; the model check ``test_set_is_the_fixed_one``
    compares each evaluation's own test inputs with them.
    """
    import hashlib

    import numpy as np
    import torch

    def digest(t) -> str:
        return hashlib.sha256(np.ascontiguousarray(np.asarray(t, dtype=np.float32)).tobytes()
                              ).hexdigest()

    xt = torch.from_numpy(np.ascontiguousarray(x_test))
    if kind != "image":
        return {"gaussian": digest(xt.float().numpy())}
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return {"bernoulli": digest(fixed_binarize(xt, levels, seed).numpy()),
            "gaussian": digest(dequantize(xt, levels, gen).numpy())}
