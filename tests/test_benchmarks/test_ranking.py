"""Kendall's τ between our ranking and a published one: scipy's τ-b, with the disagreeing
pairs named."""

import random

from scipy.stats import kendalltau

from benchmarks.ranking import kendall

PUBLISHED = {"mlp": 17.55, "mlp-aug": 29.26, "dwsnet": 85.71, "nfn-np": 78.50, "nfn-hnp": 79.11, "ng-gnn": 91.40,
             "scalegmn": 96.57, "scalegmn-b": 96.59}


def test_tau_is_scipys_tau_b_over_the_common_methods_with_ties():
    rng = random.Random(0)
    for _ in range(50):
        ours = {m: rng.choice([1.0, 2.0, 3.0, rng.random()]) for m in PUBLISHED if rng.random() < 0.9}
        ours["extra"] = 5.0  # not published: left out
        agreement = kendall(ours, PUBLISHED)
        common = sorted(set(ours) & set(PUBLISHED))
        expected = kendalltau([ours[m] for m in common], [PUBLISHED[m] for m in common]).statistic
        if agreement.tau is None:
            assert len(common) < 2 or len({ours[m] for m in common}) == 1
        else:
            assert abs(agreement.tau - expected) < 1e-12


def test_the_issues_digits_ranking_gives_its_tau_and_names_the_three_discordant_pairs():
    ours = {"mlp": 12.11, "mlp-aug": 14.28, "dwsnet": 43.87, "nfn-np": 20.05, "nfn-hnp": 19.14, "ng-gnn": 27.71,
            "scalegmn": 86.32, "scalegmn-b": 51.57}
    agreement = kendall(ours, PUBLISHED)
    assert (agreement.concordant, agreement.discordant) == (25, 3) and round(agreement.tau, 2) == 0.79
    assert set(agreement.disagreements) == {("dwsnet", "ng-gnn"), ("nfn-np", "nfn-hnp"), ("scalegmn", "scalegmn-b")}
    assert "dwsnet above ng-gnn here, not in the paper" in agreement.describe()


def test_lower_is_better_names_the_better_method_first():
    agreement = kendall({"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 1.0}, higher_is_better=False)
    assert agreement.tau == -1.0 and agreement.disagreements == (("a", "b"),)


def test_a_pair_within_our_seeds_spread_is_named_and_tied_at_our_resolution():
    ours = {"mlp": 9.70, "mlp-aug": 9.57, "dwsnet": 46.33, "scalegmn": 79.07}
    spread = {"mlp": 0.92, "mlp-aug": 0.53, "dwsnet": 2.66, "scalegmn": 0.58}
    agreement = kendall(ours, PUBLISHED, spread=spread)
    assert agreement.disagreements == (("mlp", "mlp-aug"),) and round(agreement.tau, 4) == round(4 / 6, 4)
    assert agreement.within_spread == {frozenset(("mlp", "mlp-aug"))}
    assert agreement.tau_resolved == 5 / (5 * 6) ** 0.5  # τ-b with one of six pairs tied on our side
    line = agreement.describe()
    assert "mlp above mlp-aug here, not in the paper (within our seeds' spread)" in line and "τ is 0.91" in line
    far = kendall(ours, PUBLISHED, spread={m: 0.01 for m in ours})  # the same pair outside a tiny spread
    assert far.within_spread == frozenset() and "resolution" not in far.describe()
    assert kendall(ours, PUBLISHED).tau_resolved is None  # no spread, no second τ
