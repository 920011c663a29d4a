"""Rankings compared: Kendall's τ between our numbers and the published ones, over the
methods both have, with the pairs that disagree named (a paper table prints it beside
"(ours)")."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's τ-b over ``methods``, the concordant and discordant pairs (a pair tied on
    either side is neither), and each discordant pair as ``(above in ours, above in the
    paper)``."""

    methods: tuple[str, ...]
    tau: float | None
    concordant: int
    discordant: int
    disagreements: tuple[tuple[str, str], ...]

    def describe(self, higher_is_better: bool = True) -> str:
        """One line: τ, the pair counts and the disagreements (or why there is no τ)."""
        if self.tau is None:
            return f"Kendall τ: undefined ({len(self.methods)} method(s) in both)"
        pairs = "; ".join(f"{a} {'above' if higher_is_better else 'below'} {b} here, not in the paper"
                          for a, b in self.disagreements)
        return (f"Kendall τ between our ranking and the published one over the {len(self.methods)} methods in both "
                f"({', '.join(self.methods)}): {self.tau:.2f} ({self.concordant} concordant, {self.discordant} "
                f"discordant pairs{': ' + pairs if pairs else ''})")


def kendall(ours: dict[str, float], published: dict[str, float], higher_is_better: bool = True) -> RankAgreement:
    """τ-b between ``ours`` and ``published`` over their common methods (``None`` for fewer
    than two, or when a side is constant)."""
    methods = tuple(sorted(set(ours) & set(published)))
    concordant = discordant = ties_ours = ties_paper = 0
    disagreements = []
    for a, b in itertools.combinations(methods, 2):
        x, y = ours[a] - ours[b], published[a] - published[b]
        if x == 0 or y == 0:
            ties_ours += x == 0
            ties_paper += y == 0
            continue
        if (x > 0) == (y > 0):
            concordant += 1
        else:
            discordant += 1
            better_here = a if (x > 0) == higher_is_better else b
            disagreements.append((better_here, b if better_here == a else a))
    total = len(methods) * (len(methods) - 1) // 2
    denominator = ((total - ties_ours) * (total - ties_paper)) ** 0.5
    tau = (concordant - discordant) / denominator if denominator else None
    return RankAgreement(methods, tau, concordant, discordant, tuple(disagreements))
