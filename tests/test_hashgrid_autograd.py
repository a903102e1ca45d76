"""Memory-light hash grid (saves the points, recomputes corners in backward) against the reference."""
from __future__ import annotations

import pytest
import torch

from engine.bench.saved_tensors import saved_bytes
from engine.field import HashGridEncoding, RadianceField, reference_hash_encode
from engine.presets import cpu_smoke


def _pair(chunk: int = 1 << 18, dtype=torch.float64) -> tuple[HashGridEncoding, HashGridEncoding]:
    """The same grid twice: memory-light ('torch') and reference ('torch-reference'); dense and hashed levels."""
    encs = []
    for backend in ("torch", "torch-reference"):
        enc = HashGridEncoding(6, 2, 12, 4, 1.9, bound=1.5, gen=torch.Generator().manual_seed(0),
                               backend=backend, chunk=chunk).to(dtype)
        with torch.no_grad():
            enc.table.copy_(torch.randn(enc.table.shape, generator=torch.Generator().manual_seed(1), dtype=dtype))
        encs.append(enc)
    return encs[0], encs[1]


def _points(n: int, dtype=torch.float64) -> torch.Tensor:
    x = (torch.rand(n, 3, generator=torch.Generator().manual_seed(2), dtype=dtype) * 2 - 1) * 1.5
    x[0], x[1] = 1.5, -1.5  # cube corners: clamped cells
    return x


@pytest.mark.parametrize("chunk", [7, 1 << 18])  # slices smaller than N, and one slice
def test_values_and_table_gradients_match_the_reference(chunk):
    light, ref = _pair(chunk)
    assert light.backend == "torch" and ref.backend == "torch-reference"
    x = _points(300)
    slow = reference_hash_encode(x[:40], ref.table.detach(), ref.resolutions, ref.table_size, bound=1.5)
    weights = torch.randn(300, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a, b = light(x), ref(x)
    assert torch.allclose(a, b, atol=1e-12, rtol=0) and torch.allclose(a[:40], slow, atol=1e-9, rtol=0)
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    assert light.table.grad.abs().sum() > 0
    assert torch.allclose(light.table.grad, ref.table.grad, atol=1e-10, rtol=0)


def test_float32_gradients_match_the_reference():
    light, ref = _pair(chunk=64, dtype=torch.float32)
    x = _points(500, torch.float32)
    g = torch.randn(500, 12, generator=torch.Generator().manual_seed(4))
    (light(x) * g).sum().backward()
    (ref(x) * g).sum().backward()
    assert torch.allclose(light.table.grad, ref.table.grad, atol=1e-5, rtol=1e-5)


def test_position_gradients_fall_back_to_autograd_and_match():
    light, ref = _pair()
    xa, xb = _points(100).requires_grad_(True), _points(100).requires_grad_(True)
    light(xa).square().sum().backward()
    ref(xb).square().sum().backward()
    assert xa.grad.abs().sum() > 0
    assert torch.allclose(xa.grad, xb.grad, atol=1e-10) and torch.allclose(light.table.grad, ref.table.grad)


def test_encoding_saves_at_most_16_bytes_per_sample_for_backward():
    light, ref = _pair(dtype=torch.float32)
    n = 4096
    x = _points(n, torch.float32)
    _, light_bytes = saved_bytes(lambda: light(x), exclude=[light.table])
    _, ref_bytes = saved_bytes(lambda: ref(x), exclude=[ref.table])
    assert light_bytes / n <= 16, f"{light_bytes / n:.1f} bytes per sample saved"
    assert ref_bytes / n >= 8 * 6 * 8, "the reference should keep 8 indices + 8 weights per level"


def test_field_saves_far_less_per_sample_than_with_the_reference_grid():
    spec = cpu_smoke().field
    fields = [RadianceField(spec, gen=torch.Generator().manual_seed(0), backend=b) for b in ("torch", "torch-reference")]
    x = torch.rand(2048, 3, generator=torch.Generator().manual_seed(5)) - 0.5
    per_sample = []
    for field in fields:
        (sigma, rgb), nbytes = saved_bytes(lambda f=field: f(x), exclude=list(field.parameters()))
        per_sample.append(nbytes / x.shape[0])
        (sigma.sum() + rgb.sum()).backward()
    assert torch.allclose(fields[0].encoding.table.grad, fields[1].encoding.table.grad, atol=1e-6)
    # cpu-smoke: 8 levels → the reference keeps 8·8·(4+4) = 512 bytes more per sample
    assert per_sample[1] - per_sample[0] >= 500, per_sample


def test_bad_backend_and_chunk_are_explained():
    with pytest.raises(ValueError, match="torch-reference"):
        HashGridEncoding(4, 2, 10, 4, 1.5, backend="cuda")
    with pytest.raises(ValueError, match="chunk"):
        HashGridEncoding(4, 2, 10, 4, 1.5, backend="torch", chunk=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: the tests above")
def test_cuda_values_and_gradients_match_the_cpu_reference():
    light, ref = _pair(chunk=1000, dtype=torch.float32)
    light = light.cuda()
    x = _points(5000, torch.float32)
    g = torch.randn(5000, 12, generator=torch.Generator().manual_seed(6))
    out, nbytes = saved_bytes(lambda: light(x.cuda()), exclude=[light.table])
    (out * g.cuda()).sum().backward()
    (ref(x) * g).sum().backward()
    assert nbytes / 5000 <= 16
    assert torch.allclose(out.cpu(), ref(x).detach(), atol=1e-5)
    assert torch.allclose(light.table.grad.cpu(), ref.table.grad, atol=1e-4, rtol=1e-4)
