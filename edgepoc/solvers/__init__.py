"""Solvers of the allocation game, behind one interface: `solve(instance, method, ...)`."""

from edgepoc.solvers.registry import METHODS, SolveOptions, SolveResult, solve

__all__ = ["METHODS", "SolveOptions", "SolveResult", "solve"]
