"""How fast is the exact contractive penalty? ``python benchmarks/contractive_penalty.py``

Times forward + backward of ``||dz/dx||_F^2`` for the study's dense encoder (784-512-256-latent)
three ways: the closed form used for MLP encoders, ``torch.func`` (vmap over jacrev, used for any
other encoder), and one autograd pass per latent unit (the textbook way), and checks they agree.
"""

from __future__ import annotations

import argparse
import time

import torch

from ae_lab.models.jacobian import _generic_jacobian_frobenius_sq, _mlp_jacobian_frobenius_sq
from ae_lab.nets import mlp_autoencoder


def row_by_row(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One backward pass per latent unit: rows of J for the whole batch, summed squares."""
    x = x.detach().requires_grad_(True)
    z = encoder(x)
    total = x.new_zeros(())
    for unit in range(z.shape[1]):
        (row,) = torch.autograd.grad(z[:, unit].sum(), x, create_graph=True)
        total = total + row.square().sum()
    return total / x.shape[0]


def timed(fn, encoder, x, repeats: int) -> tuple[float, float]:
    value = fn(encoder, x)
    value.backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.zero_grad()
        value = fn(encoder, x)
        value.backward()
    return (time.perf_counter() - start) / repeats, float(value.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--latent", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device {args.device}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'latent':>6} {'method':>12} {'ms/step':>9} {'penalty':>12}")
    for latent in args.latent:
        torch.manual_seed(0)
        encoder, _ = mlp_autoencoder((1, 28, 28), latent, latent, hidden_dims=[512, 256])
        encoder = encoder.to(args.device)
        x = torch.rand(args.batch, 1, 28, 28, device=args.device)
        methods = {
            "closed form": _mlp_jacobian_frobenius_sq,
            "torch.func": _generic_jacobian_frobenius_sq,
            "row by row": row_by_row,
        }
        values = []
        for name, fn in methods.items():
            seconds, value = timed(fn, encoder, x, args.repeats)
            values.append(value)
            print(f"{latent:>6} {name:>12} {seconds * 1e3:>9.1f} {value:>12.5f}")
        assert max(values) - min(values) <= 1e-3 * max(values), values


if __name__ == "__main__":
    main()
