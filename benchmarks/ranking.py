"""Rankings compared: Kendall's τ between our numbers and the published ones, over the
methods both have, with the pairs that disagree named (a paper table prints it beside
"(ours)"). Where our numbers have a spread over seeds, a pair whose means differ by no more
than the sum of their standard deviations is also counted as a tie on our side, in a second
τ ("at our resolution"), so a disagreement inside the noise is told from a real one."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's τ-b over ``methods``, the concordant and discordant pairs (a pair tied on
    either side is neither), each discordant pair as ``(above in ours, above in the paper)``,
    the pairs of ours within the seeds' spread, and τ-b with those pairs tied
    (``tau_resolved``; ``None`` without a spread)."""

    methods: tuple[str, ...]
    tau: float | None
    concordant: int
    discordant: int
    disagreements: tuple[tuple[str, str], ...]
    within_spread: frozenset[frozenset[str]] = frozenset()
    tau_resolved: float | None = None

    def describe(self, higher_is_better: bool = True) -> str:
        """One line: τ, the pair counts and the disagreements (or why there is no τ)."""
        if self.tau is None:
            return f"Kendall τ: undefined ({len(self.methods)} method(s) in both)"
        pairs = "; ".join(f"{a} {'above' if higher_is_better else 'below'} {b} here, not in the paper"
                          + (" (within our seeds' spread)" if frozenset((a, b)) in self.within_spread else "")
                          for a, b in self.disagreements)
        line = (f"Kendall τ between our ranking and the published one over the {len(self.methods)} methods in both "
                f"({', '.join(self.methods)}): {self.tau:.2f} ({self.concordant} concordant, {self.discordant} "
                f"discordant pairs{': ' + pairs if pairs else ''})")
        if self.tau_resolved is None or not self.within_spread:
            return line
        return (f"{line}; at our resolution (a pair whose means differ by at most the sum of their standard "
                f"deviations over seeds counted as a tie: {len(self.within_spread)} pair(s)) τ is "
                f"{self.tau_resolved:.2f}")


def tau_b(ours: dict[str, float], published: dict[str, float], methods: tuple[str, ...],
          tied: frozenset[frozenset[str]] = frozenset()) -> tuple[float | None, int, int, list[tuple[str, str]]]:
    """τ-b over ``methods`` (pairs in ``tied`` count as ties on our side), the concordant and
    discordant counts and the discordant pairs as ``(a, b)`` with ``ours[a] > ours[b]``."""
    concordant = discordant = ties_ours = ties_paper = 0
    disagreements = []
    for a, b in itertools.combinations(methods, 2):
        x, y = ours[a] - ours[b], published[a] - published[b]
        if x == 0 or y == 0 or frozenset((a, b)) in tied:
            ties_ours += x == 0 or frozenset((a, b)) in tied
            ties_paper += y == 0
            continue
        if (x > 0) == (y > 0):
            concordant += 1
        else:
            discordant += 1
            disagreements.append((a, b) if x > 0 else (b, a))
    total = len(methods) * (len(methods) - 1) // 2
    denominator = ((total - ties_ours) * (total - ties_paper)) ** 0.5
    return ((concordant - discordant) / denominator if denominator else None), concordant, discordant, disagreements


def kendall(ours: dict[str, float], published: dict[str, float], higher_is_better: bool = True,
            spread: dict[str, float] | None = None) -> RankAgreement:
    """τ-b between ``ours`` and ``published`` over their common methods (``None`` for fewer
    than two, or when a side is constant); with ``spread`` (our standard deviation over seeds
    per method), also τ-b at our resolution."""
    methods = tuple(sorted(set(ours) & set(published)))
    tau, concordant, discordant, pairs = tau_b(ours, published, methods)
    disagreements = tuple(pairs if higher_is_better else [(b, a) for a, b in pairs])
    if not spread:
        return RankAgreement(methods, tau, concordant, discordant, disagreements)
    within = frozenset(frozenset((a, b)) for a, b in itertools.combinations(methods, 2)
                       if a in spread and b in spread and abs(ours[a] - ours[b]) <= spread[a] + spread[b])
    return RankAgreement(methods, tau, concordant, discordant, disagreements, within,
                         tau_b(ours, published, methods, within)[0])
