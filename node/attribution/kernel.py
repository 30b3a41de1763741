"""The linear algebra of one snapshot: Adam preconditioning and the damped empirical-Fisher kernel.

With the preconditioner P = diag(1/(sqrt(v_hat)+eps)) split symmetrically (phi = P^½ g, so
phiᵀpsi = gᵀ P q, the first-order loss change of an Adam step), the score of training example i
against query j is

    a_ij = phi_iᵀ F⁻¹ psi_j,    F = PhiᵀPhi/N + lambda·I      (Phi: (N, d), one row per example)

Why the kernel: every on-task example teaches the answer *template* alike; that direction has a
large eigenvalue in F and F⁻¹ shrinks it, so what is left is what an example teaches that others
do not (and redundant examples split their credit instead of each being paid in full).

When N < d the push-through identity Phi (PhiᵀPhi/N + lambda·I)⁻¹ = (PhiPhiᵀ/N + lambda·I)⁻¹ Phi
turns the (d, d) solve into an (N, N) one. lambda is relative: `damping` times the mean non-zero
eigenvalue of PhiᵀPhi/N, so the method does not depend on the gradients' units.
"""

from __future__ import annotations

import torch


def preconditioner_sqrt(exp_avg_sq: torch.Tensor, adam_step: int, beta2: float, eps: float) -> torch.Tensor:
    """P^½ = (sqrt(v_hat) + eps)^-½ with Adam's bias correction v_hat = v / (1 - beta2^t)."""
    v = exp_avg_sq.to(torch.float64)
    if adam_step > 0:
        v = v / (1.0 - beta2**adam_step)
    return (v.sqrt() + eps).rsqrt()


def damping_lambda(phi: torch.Tensor, damping: float) -> float:
    n, d = phi.shape
    if n == 0 or d == 0:
        return 0.0
    return float(damping * (phi * phi).sum() / (n * min(n, d)))


def query_vectors(phi: torch.Tensor, psi: torch.Tensor, damping: float) -> torch.Tensor:
    """(d, Q) V = F⁻¹ Psiᵀ: each query's gradient through the inverse kernel. A training example's
    score against query j is then phi_iᵀ V[:, j], so with V committed per snapshot, checking one
    example's score costs that example's gradients alone (`node.attribution.narrow`).

    When N <= d, Woodbury gives V from an (N, N) system, K = PhiPhiᵀ/N + lambda·I:
    V = (Psiᵀ - Phiᵀ K⁻¹ Phi Psiᵀ / N) / lambda (then Phi V = K⁻¹ Phi Psiᵀ, the push-through)."""
    n, d = phi.shape
    lam = damping_lambda(phi, damping)
    if lam == 0.0:  # every training gradient is zero: nothing moved, nothing to credit
        return torch.zeros(d, psi.shape[0], dtype=phi.dtype)
    if n <= d:
        k = phi @ phi.T / n + lam * torch.eye(n, dtype=phi.dtype)  # (N, N)
        chol = torch.linalg.cholesky(k)
        return (psi.T - phi.T @ torch.cholesky_solve(phi @ psi.T, chol) / n) / lam
    f = phi.T @ phi / n + lam * torch.eye(d, dtype=phi.dtype)  # (d, d)
    return torch.cholesky_solve(psi.T, torch.linalg.cholesky(f))


def kernel_scores(phi: torch.Tensor, psi: torch.Tensor, damping: float) -> torch.Tensor:
    """(N, Q) matrix of phi_iᵀ F⁻¹ psi_j for phi (N, d) and psi (Q, d), float64 in and out."""
    return phi @ query_vectors(phi, psi, damping)


def dense_reference(phi: torch.Tensor, psi: torch.Tensor, damping: float) -> torch.Tensor:
    """The same quantity by the definition: an explicit inverse of F (for tests only)."""
    n, d = phi.shape
    f = phi.T @ phi / n + damping_lambda(phi, damping) * torch.eye(d, dtype=phi.dtype)
    return phi @ torch.linalg.inv(f) @ psi.T


__all__ = ["damping_lambda", "dense_reference", "kernel_scores", "preconditioner_sqrt", "query_vectors"]
