"""Multi-resolution hash-grid encoding (Instant-NGP style) in pure PyTorch, tiny-cuda-nn when present.

Each level l has a grid of resolution res_l = floor(base · growth^l) cells per axis. A point is
encoded by trilinear interpolation of the features stored at its cell's 8 corners. Coarse levels
whose (res_l + 1)^3 vertices fit in the table are indexed densely (no collisions); finer levels use
the usual spatial hash (x·1 ⊕ y·2654435761 ⊕ z·805459861) mod T.

The torch path computes every level at once (int32 indices, level-major, large contiguous ops)
from a feature-major table (F, L·T); its backward is one 1-D `index_add_` per feature, about twice
as fast on CPU as autograd through indexing. `backend="torch"` saves only the points for backward
and recomputes corners and weights there (hashgrid_autograd.py: 12 bytes per sample instead of
~1 KB); `"torch-reference"` keeps the earlier function that saves the (8, L, N) indices and
weights, the reference the tests and `vsdream bench memory` compare against. When the input needs
a gradient itself (normals from the density gradient) both run through plain autograd instead.

tiny-cuda-nn (`backend="tcnn"`, or "auto" with tinycudann importable, CUDA available and
VSDREAM_ACCEL allowing it) has the same interface, but its level scales, hash and table layout
differ from ours: weights do not transfer between the two backends. tiny-cuda-nn initialises its
table itself from an integer seed (1337 unless told); we draw that seed from the job's generator
(`tcnn_seed`), so particles built one after another start from different tables, as on the torch
path, and the same job seed gives the same tables. It is built in fp32 (threestudio does the same;
tiny-cuda-nn's default is fp16 on GPUs that have it).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import accel
from .hashgrid_autograd import DEFAULT_CHUNK, hash_encode
from .hashgrid_index import PRIMES, corner_indices_weights, gather_features

__all__ = ["PRIMES", "HashGridEncoding", "corner_indices_weights", "gather_features", "reference_hash_encode"]
BACKENDS = ("auto", "torch", "torch-reference", "tcnn")


def level_resolutions(levels: int, base_resolution: int, growth: float) -> list[int]:
    return [int(math.floor(base_resolution * growth ** lvl)) for lvl in range(levels)]


TCNN_SEED_END = 2 ** 31  # tcnn takes a size_t; staying below 2^31 keeps every platform's int happy


def tcnn_seed(gen: torch.Generator | None) -> int:
    """tiny-cuda-nn's initialisation seed, drawn from `gen` (the global RNG when None).

    One draw per encoding: particles built in turn from one job generator get different seeds,
    and the same generator state gives the same seed.
    """
    device = gen.device if gen is not None else "cpu"
    return int(torch.randint(0, TCNN_SEED_END, (1,), generator=gen, device=device))


def tcnn_encoding_config(levels: int, features_per_level: int, log2_table_size: int, base_resolution: int,
                         growth: float) -> dict:
    """tiny-cuda-nn's HashGrid configuration for our parameters."""
    return {"otype": "HashGrid", "n_levels": levels, "n_features_per_level": features_per_level,
            "log2_hashmap_size": log2_table_size, "base_resolution": base_resolution, "per_level_scale": growth}


def tcnn_encoding_kwargs(levels: int, features_per_level: int, log2_table_size: int, base_resolution: int,
                         growth: float, seed: int) -> dict:
    """Keyword arguments of `tinycudann.Encoding` for our grid. dtype float32: tiny-cuda-nn defaults to
    fp16 parameters and outputs where the GPU supports them; threestudio forces fp32 (as we do), so a
    GPU run computes what the fp32 torch grid the tests check computes."""
    return {"n_input_dims": 3, "encoding_config": tcnn_encoding_config(levels, features_per_level, log2_table_size,
                                                                       base_resolution, growth),
            "seed": seed, "dtype": torch.float32}


def _tcnn_available() -> bool:
    """tiny-cuda-nn imports and a CUDA device is present (VSDREAM_ACCEL is checked by 'auto' only)."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a build that fails to load its CUDA library
        return False
    return True


class HashGridEncoding(nn.Module):
    """(N, 3) points in [-bound, bound]^3 → (N, levels · features_per_level) features."""

    def __init__(self, levels: int, features_per_level: int, log2_table_size: int, base_resolution: int,
                 growth: float, bound: float = 1.0, gen: torch.Generator | None = None,
                 backend: str = "auto", chunk: int = DEFAULT_CHUNK):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend = {backend!r}: use one of {', '.join(map(repr, BACKENDS))}")
        if chunk < 1:
            raise ValueError(f"chunk = {chunk}: points per slice of the torch encoding, must be ≥ 1")
        if levels < 1 or features_per_level < 1 or log2_table_size < 1 or levels * 2 ** log2_table_size >= 2 ** 31:
            raise ValueError(f"levels={levels}, features_per_level={features_per_level}, "
                             f"log2_table_size={log2_table_size}: need ≥ 1 each and levels · 2^log2 < 2^31")
        self.levels, self.features, self.bound = levels, features_per_level, float(bound)
        self.table_size = 2 ** log2_table_size
        self.resolutions = level_resolutions(levels, base_resolution, growth)
        self.output_dim = levels * features_per_level
        auto_tcnn = backend == "auto" and accel.allowed("tcnn") and _tcnn_available()
        self.chunk = int(chunk)
        self.backend = "tcnn" if backend == "tcnn" or auto_tcnn else ("torch-reference" if backend == "torch-reference"
                                                                      else "torch")
        if self.backend == "tcnn":
            if not auto_tcnn and not _tcnn_available():
                raise RuntimeError("backend='tcnn' needs tiny-cuda-nn importable and a CUDA device: "
                                   "use backend='auto' (falls back to torch) or 'torch'")
            import tinycudann as tcnn
            self.seed = tcnn_seed(gen)  # tcnn draws its table uniform ±1e-4 itself, from this seed
            self.tcnn = tcnn.Encoding(**tcnn_encoding_kwargs(levels, features_per_level, log2_table_size,
                                                             base_resolution, growth, self.seed))
            return
        table = torch.empty(features_per_level, levels * self.table_size)  # feature-major: fast gathers
        nn.init.uniform_(table, -1e-4, 1e-4, generator=gen)
        self.table = nn.Parameter(table)
        res = torch.tensor(self.resolutions, dtype=torch.int64)
        self.register_buffer("_res", res, persistent=False)
        self.register_buffer("_dense", (res + 1) ** 3 <= self.table_size, persistent=False)
        self.n_dense = sum((r + 1) ** 3 <= self.table_size for r in self.resolutions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"HashGridEncoding expects points of shape (N, 3), got {tuple(x.shape)}")
        u = ((x + self.bound) / (2 * self.bound)).clamp(0.0, 1.0)
        if self.backend == "tcnn":
            if not x.is_cuda:
                raise RuntimeError("this HashGridEncoding uses tiny-cuda-nn: give it CUDA points, "
                                   "or build it with backend='torch' for CPU")
            return self.tcnn(u).float()
        if self.backend == "torch" and not x.requires_grad:
            return hash_encode(self.table, u.detach(), self._res, self.n_dense, self.table_size, self.chunk)
        idx, w = corner_indices_weights(u, self._res, self.n_dense, self.table_size)
        if x.requires_grad:  # gradient w.r.t. the points too (normals): plain autograd
            return gather_features(self.table, idx, w)
        return _HashGather.apply(self.table, idx, w)


class _HashGather(torch.autograd.Function):
    """gather_features for a constant w; backward scatters with 1-D index_add_ per feature."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx, w)
        ctx.table_shape = table.shape
        return gather_features(table, idx, w)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        idx, w = ctx.saved_tensors
        f, rows = ctx.table_shape
        _, n_levels, n = idx.shape
        g = grad_out.reshape(n, n_levels, f).permute(2, 1, 0)  # (F, L, N)
        flat = idx.reshape(-1)
        grad_table = torch.zeros(f, rows, dtype=grad_out.dtype, device=grad_out.device)
        for k in range(f):
            grad_table[k].index_add_(0, flat, (w * g[k]).reshape(-1))
        return grad_table, None, None


def reference_hash_encode(x: torch.Tensor, table: torch.Tensor, resolutions: list[int], table_size: int,
                          bound: float = 1.0) -> torch.Tensor:
    """Slow, loop-by-loop encoding used by tests to check the vectorised one. table: (F, L·T)."""
    out = []
    for p in x.tolist():
        feats = []
        for lvl, r in enumerate(resolutions):
            u = [min(max((c + bound) / (2 * bound), 0.0), 1.0) * r for c in p]
            base = [min(int(math.floor(c)), r - 1) for c in u]
            acc = torch.zeros(table.shape[0], dtype=table.dtype)
            for bx in (0, 1):
                for by in (0, 1):
                    for bz in (0, 1):
                        cx, cy, cz = base[0] + bx, base[1] + by, base[2] + bz
                        if (r + 1) ** 3 <= table_size:
                            row = cx + cy * (r + 1) + cz * (r + 1) ** 2
                        else:
                            row = ((cx * PRIMES[0]) ^ (cy * PRIMES[1]) ^ (cz * PRIMES[2])) % table_size
                        wt = 1.0
                        for c, b, lo in zip(u, (bx, by, bz), base, strict=True):
                            f = c - lo
                            wt *= f if b else 1.0 - f
                        acc = acc + wt * table[:, lvl * table_size + row]
            feats.append(acc)
        out.append(torch.cat(feats))
    return torch.stack(out)
