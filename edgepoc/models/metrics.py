"""Model metrics (SPEC §4): accuracy against labels and the diversity score D (paper Eq. 2-3)."""

from __future__ import annotations

import numpy as np
import torch


def accuracy(actions: np.ndarray, labels: np.ndarray) -> float:
    """Share of tasks whose action equals the label."""
    actions, labels = np.asarray(actions), np.asarray(labels)
    return float((actions == labels).mean()) if actions.size else float("nan")


def diversity(p: np.ndarray | torch.Tensor, chunk: int = 2048) -> float:
    """D: mean Euclidean distance ||P_i - P_j|| over all pairs i < j (paper Eq. 2-3).

    Exact, in float64, without an n x n Python loop: the full distance matrix is computed in row
    chunks (`torch.cdist`, direct differences rather than the matmul shortcut, for precision),
    so memory stays O(chunk * n) for 100 000+ tasks. The sum over all ordered pairs is twice the
    sum over i < j (the diagonal is zero).
    """
    t = torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p).detach().to(torch.float64)
    n = t.shape[0]
    if n < 2:
        return 0.0
    total = 0.0
    for s in range(0, n, chunk):
        d = torch.cdist(t[s:s + chunk], t, compute_mode="donot_use_mm_for_euclid_dist")
        total += float(d.sum())
    return total / (n * (n - 1))


def diversity_bruteforce(p: np.ndarray) -> float:
    """Reference D by the pairwise definition (tests only: O(n^2) Python)."""
    p = np.asarray(p, dtype=np.float64)
    n = p.shape[0]
    dist = [float(np.sqrt(((p[i] - p[j]) ** 2).sum())) for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(dist)) if dist else 0.0
