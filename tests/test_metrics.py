"""Metrics on hand-made inputs whose answers are known: the functions here are the ones that produce every reported
number (evaluation/functional.py and evaluation/tables.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from lfsbench.concepts import modifier_token
from lfsbench.evaluation import functional as metrics
from lfsbench.evaluation import tables
from lfsbench.evaluation.metrics import METRICS, in_view

NAN = np.nan


def unit(*rows):
    m = torch.tensor(rows, dtype=torch.float32)
    return m / m.norm(dim=1, keepdim=True)


def test_text_alignment_and_clip_score():
    img = unit([1, 0], [0, 1], [1, 1])
    txt = unit([1, 0], [1, 0], [1, 0])
    np.testing.assert_allclose(metrics.text_alignment_scores(img, txt), [1, 0, np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(metrics.clip_score([0.3, -0.2]), [0.75, 0.0])


def test_image_alignment_averages_all_pairs():
    gen = unit([1, 0], [0, 1])
    ref = unit([1, 0], [-1, 0], [0, 1])
    # image 1: (1 - 1 + 0) / 3; image 2: (0 + 0 + 1) / 3
    np.testing.assert_allclose(metrics.image_alignment_scores(gen, ref), [0, 1 / 3], atol=1e-6)


def test_paired_drift():
    np.testing.assert_allclose(
        metrics.paired_drift_scores(unit([1, 0], [0, 1]), unit([1, 0], [1, 0])), [0, 1], atol=1e-6
    )


def test_bootstrap_interval_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(0.5, 0.1, 16)
    big = rng.normal(0.5, 0.1, 1024)
    m, lo, hi = metrics.bootstrap_ci(small)
    assert lo < m < hi and m == pytest.approx(small.mean())
    _, lo2, hi2 = metrics.bootstrap_ci(big)
    assert (hi2 - lo2) < (hi - lo) / 4
    assert metrics.bootstrap_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))


def test_roc_auc():
    assert metrics.roc_auc([3, 4], [1, 2]) == 1.0
    assert metrics.roc_auc([1, 2], [3, 4]) == 0.0
    assert metrics.roc_auc([1, 3], [2, 2]) == 0.5


def test_max_forgetting_from_known_sessions():
    # a concept's IA after the sessions it was evaluated in: 0.8 when learned, then 0.9, and 0.6 now -> 0.9 - 0.6;
    # a second one only 0.7 then 0.5 -> 0.2; no spread, so the interval is the point
    history = [[np.full(3, 0.8), np.full(3, 0.9)], [np.full(2, 0.7)]]
    last = [np.full(3, 0.6), np.full(2, 0.5)]
    assert metrics.bootstrap_peak_drop(history, last, 200) == pytest.approx((0.25, 0.25, 0.25))
    # under checkpoints the peak is over the sessions it was evaluated in: an improvement reads as negative
    assert metrics.bootstrap_peak_drop([[np.full(3, 0.4)]], [np.full(3, 0.5)], 50)[0] == pytest.approx(-0.1)
    rng = np.random.default_rng(2)
    point, lo, hi = metrics.bootstrap_peak_drop([[rng.normal(0.8, 0.05, 64)]], [rng.normal(0.6, 0.05, 64)], 1000)
    assert lo < point < hi and 0.01 < hi - lo < 0.06
    assert np.isnan(metrics.bootstrap_peak_drop([], [], 10)[0])


def test_mean_of_means_and_t_interval():
    assert metrics.bootstrap_mean_of_means([np.full(4, 0.8), np.full(2, 0.7)], 100) == pytest.approx((0.75,) * 3)
    # per-seed values 0.25, 0.27, 0.28: mean 0.2667, s = 0.01528, t_{0.975, 2} = 4.303 -> half-width 0.0380
    mean, lo, hi = metrics.t_interval([0.25, 0.27, 0.28])
    assert mean == pytest.approx(0.26667, abs=1e-4) and hi - lo == pytest.approx(0.0759, abs=2e-4)
    assert np.isnan(metrics.t_interval([0.3])[1])  # one replicate: no spread to measure


def test_multiplicity_corrections_and_p_values_on_known_values():
    from scipy import stats

    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # Holm: sorted 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1, made monotone: 0.02, 0.03, 0.06, 0.06; NaN not counted
    np.testing.assert_allclose(metrics.holm(p), [0.03, 0.06, 0.06, 0.02, np.nan])
    # BH: p x 4 / rank = 0.02, 0.02, 0.04, 0.04 (already monotone)
    np.testing.assert_allclose(metrics.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02, np.nan])
    assert metrics.holm([0.6, 0.7]).max() == 1.0 and len(metrics.holm([])) == 0
    assert metrics.t_test_p([0.1, 0.095, 0.09]) == pytest.approx(stats.ttest_1samp([0.1, 0.095, 0.09], 0).pvalue)
    assert np.isnan(metrics.t_test_p([0.2])) and np.isnan(metrics.t_test_p([0.2, 0.2]))
    # bootstrap p: every draw above 0 -> the smallest p 999 draws allow; draws centred on 0 -> about 1
    assert metrics.bootstrap_p(np.linspace(0.01, 1, 999)) == pytest.approx(2 / 1000)
    assert metrics.bootstrap_p(np.linspace(-1, 1, 999)) > 0.95
    rng = np.random.default_rng(1)  # a true difference of 0: p below 0.05 about 5% of the time
    false_alarms = [metrics.bootstrap_p(metrics.bootstrap_means(rng.normal(0, 1, 64), 400)) < 0.05 for _ in range(300)]
    assert 0.01 < np.mean(false_alarms) < 0.12


def test_bootstrap_drop_point_and_interval():
    first = [np.array([0.8, 0.8, 0.8]), np.array([0.6, 0.6])]
    last = [np.array([0.5, 0.5]), np.array([0.6, 0.6, 0.6])]
    assert metrics.bootstrap_drop(first, last, 200) == pytest.approx((0.15, 0.15, 0.15))  # no spread: a point
    rng = np.random.default_rng(1)
    noisy = [rng.normal(0.8, 0.05, 64)], [rng.normal(0.6, 0.05, 64)]
    point, lo, hi = metrics.bootstrap_drop(*noisy, 1000)
    assert point == pytest.approx(noisy[0][0].mean() - noisy[1][0].mean())
    assert lo < point < hi and 0.01 < hi - lo < 0.06  # about 2 * 1.96 * 0.05 * sqrt(2 / 64) = 0.035
    assert np.isnan(metrics.bootstrap_drop([], [], 100)[0])


# ---------------------------------------------------------------- score frames -> session rows and the summary

LEARNED = {"a": 0, "b": 1}  # concept a (class "cat") learned in session 0, b (class "dog") in session 1
CLASS_FIRST = {"cat": 0, "dog": 1}


def _records(t, kind, name, ia=None, ta=None, drift=None, n=4, ia_shots=None, copied=None, class_correct=None):
    ta = [0.3] * n if ta is None else ta
    ia = [NAN] * n if ia is None else ia
    ia_shots = ia if ia_shots is None else ia_shots
    drift = [NAN] * n if drift is None else drift
    measured = kind in ("concept", "control")
    copied = ([0.0] * n if measured else [NAN] * n) if copied is None else copied
    if class_correct is None:
        class_correct = [1.0] * n if kind in ("class", "base_class") else [NAN] * n
    return [
        {
            "session": t,
            "kind": kind,
            "name": name,
            "prompt": f"p{i % 2}",
            "seed": i,
            "ta": ta[i],
            "ia": ia[i],
            "ia_shots": ia_shots[i],
            "drift": drift[i],
            "shot_distance": 0.2 if measured else NAN,
            "reference_distance": 0.2 if measured else NAN,
            "copied": copied[i],
            "class_correct": class_correct[i],
        }
        for i in range(n)
    ]


def _session(t, ia_a, ia_b=None, control_a=None):
    """Session t's records: classes (and the base model's), concepts, their class-prompt alignments (and a control
    for a)."""
    recs = _records(t, "class", "cat", drift=[0.1, 0.2, 0.1, 0.2]) + _records(t, "concept", "a", ia=ia_a)
    recs += _records(t, "base_class", "cat", ta=[0.35] * 4)
    if control_a is not None:
        recs += _records(t, "control", "a", ia=control_a)
    recs += _records(t, "base_class_for_concept", "a", ia=[0.2] * 4) + _records(
        t, "class_for_concept", "a", ia=[0.3] * 4
    )
    if ia_b is not None:
        recs += _records(t, "class", "dog", drift=[0.0] * 4) + _records(t, "concept", "b", ia=ia_b)
        recs += _records(t, "base_class", "dog", ta=[0.3] * 4)
        recs += _records(t, "base_class_for_concept", "b", ia=[0.1] * 4) + _records(
            t, "class_for_concept", "b", ia=[0.1] * 4
        )
    return pd.DataFrame(recs)


def _run(sessions):
    """Session rows and all scores of a hand-made run: sessions = [(ia_a, ia_b or None, control_a or None), ...]."""
    history, rows = pd.DataFrame(), []
    for t, (ia_a, ia_b, control) in enumerate(sessions):
        scores = _session(t, ia_a, ia_b, control)
        history = pd.concat([history, scores], ignore_index=True)
        rows.append(tables.session_rows(scores, history, t, LEARNED, CLASS_FIRST, 200))
    return pd.concat(rows, ignore_index=True), history


def _value(rows, t, name, metric):
    return rows[(rows.session == t) & (rows.name == name) & (rows.metric == metric)].value.item()


def test_session_rows_matrices_and_forgetting_on_a_known_run():
    # a: IA 0.8 when learned, 0.9 after session 1, 0.6 after session 2; b: 0.7, then 0.5
    rows, scores = _run([([0.8] * 4, None, None), ([0.9] * 4, [0.7] * 4, None), ([0.6] * 4, [0.5] * 4, None)])
    assert _value(rows, 2, "a", "IA") == pytest.approx(0.6)
    assert _value(rows, 2, "a", "IAD") == pytest.approx(0.2)  # IA[0][a] - IA[2][a]
    assert _value(rows, 2, "a", "forgetting_max") == pytest.approx(0.3)  # peak 0.9 (session 1) - 0.6
    assert _value(rows, 2, "b", "IAD") == pytest.approx(0.2)
    assert _value(rows, 1, "a", "IAD") == pytest.approx(-0.1)  # it improved
    assert _value(rows, 0, "a", "CLIPScore") == pytest.approx(0.75)
    assert _value(rows, 2, "cat", "drift") == pytest.approx(0.15) and _value(rows, 2, "dog", "class_TA") == 0.3
    assert ((rows.session == 0) & (rows.metric == "IAD")).sum() == 0  # nothing learned before session 0
    ia = tables.matrix(rows, "IA", ["a", "b"])
    np.testing.assert_allclose(ia.to_numpy(), [[0.8, NAN], [0.9, 0.7], [0.6, 0.5]])
    summary = tables.summarize(scores, pd.DataFrame(), LEARNED, {"drift_seed_scale": 0.5}, 200)
    assert summary["sessions_finished"] == 3 and summary["concepts"] == 2
    assert summary["IA"]["value"] == pytest.approx(0.55)
    assert summary["IAD"]["value"] == pytest.approx(0.2)  # mean of a's 0.2 and b's 0.2
    assert summary["forgetting_max"]["value"] == pytest.approx((0.3 + 0.2) / 2)
    assert summary["IA_right_after_learning"]["value"] == pytest.approx(0.75)  # (0.8 + 0.7) / 2
    assert summary["IA_base_class_prompt"] == pytest.approx(0.15)
    assert summary["concepts_above_base_class_prompt_right_after_learning"] == 2
    assert summary["drift"]["value"] == pytest.approx((0.15 * 4 + 0.0 * 4) / 8)
    assert "IA_control" not in summary
    # every interval holds its point, and every metric produced is defined in the table
    for key, value in summary.items():
        if isinstance(value, dict) and "ci_low" in value:
            assert value["ci_low"] <= value["value"] + 1e-12 and value["value"] <= value["ci_high"] + 1e-12, key
    assert set(rows.metric) <= set(METRICS)
    assert {k for k in summary if k not in ("sessions_finished", "cost")} <= set(METRICS)


def test_forgetting_max_with_an_unevaluated_session():
    """Under evaluation checkpoints a concept can miss a session: IAD and the max-based peak use what was evaluated."""
    rows, scores = _run([([0.8] * 4, None, None), ([0.9] * 4, [0.7] * 4, None), ([0.6] * 4, [0.5] * 4, None)])
    skipped = scores[~((scores.session == 1) & (scores.name == "a"))]  # a not evaluated after session 1
    t = 2
    now = skipped[skipped.session == t]
    rows2 = tables.session_rows(now, skipped, t, LEARNED, CLASS_FIRST, 200)
    assert _value(rows2, 2, "a", "forgetting_max") == pytest.approx(0.2)  # peak over sessions 0 and 2 only
    assert _value(rows2, 2, "a", "IAD") == pytest.approx(0.2)
    assert tables.full_sessions(skipped, LEARNED) == [0, 2]


def test_session_figures_and_the_control_gain_are_paired():
    rows, scores = _run([([0.8] * 4, None, [0.5] * 4), ([0.6, 0.7, 0.6, 0.7], [0.7] * 4, [0.4, 0.4, 0.5, 0.5])])
    figures = tables.session_figures(scores, 1, LEARNED, 200)
    assert figures["IA_gain_over_control"]["value"] == pytest.approx(np.mean([0.2, 0.3, 0.1, 0.2]))
    assert figures["IA_control"]["value"] == pytest.approx(0.45)
    assert figures["IAD"]["value"] == pytest.approx(0.8 - 0.65)  # over a only (b was learned in session 1)
    curves = tables.run_curves(scores, pd.DataFrame(columns=["session"]), LEARNED, 200)
    # these scores have no DINO column and no two-concept images
    oracle = {"compliance", "copy_excess", "novel_IA"}  # toy world 2 only
    detectors = {"copy_rate_relative", "copy_rate_dino"}  # their columns (relative_copy, dino_copy) are not here
    # nor concept confusion's column (confused), nor images of untouched classes
    later = {"confusion_rate", "untouched_class_accuracy", "untouched_TA_drop", "untouched_drift"}
    composition = {"multi_compliance", "multi_recognised", "multi_both"}  # two-concept images on toy world 2
    absent = {"IA_dino", "multi_TA", "multi_IA", *oracle, *detectors, *later, *composition}
    assert set(curves.metric) == set(in_view("curve")) - absent
    assert curves[(curves.session == 1) & (curves.metric == "IAD")].value.item() == pytest.approx(0.15)


def test_dino_figures_follow_ia_dino_where_a_run_has_it():
    """IA_dino, IA_dino_shots and IAD_dino by hand; scores without the column (older runs, no DINO model) give none."""
    history, rows = pd.DataFrame(), []
    for t, (ia_a, ia_b) in enumerate([([0.8] * 4, None), ([0.6] * 4, [0.7] * 4)]):
        scores = _session(t, ia_a, ia_b)
        concept = scores.kind == "concept"
        scores["ia_dino"] = np.where(concept, scores.ia - 0.3, NAN)  # a: 0.5 then 0.3; b: 0.4
        scores["ia_dino_shots"] = np.where(concept, scores.ia - 0.1, NAN)
        history = pd.concat([history, scores], ignore_index=True)
        rows.append(tables.session_rows(scores, history, t, LEARNED, CLASS_FIRST, 200))
    rows = pd.concat(rows, ignore_index=True)
    assert _value(rows, 1, "a", "IAD_dino") == pytest.approx(0.5 - 0.3)
    assert _value(rows, 1, "b", "IA_dino") == pytest.approx(0.4)
    figures = tables.session_figures(history, 1, LEARNED, 200)
    assert figures["IA_dino"]["value"] == pytest.approx((0.3 + 0.4) / 2)
    assert figures["IA_dino_shots"]["value"] == pytest.approx((0.5 + 0.6) / 2)
    assert figures["IAD_dino"]["value"] == pytest.approx(0.2)
    plain = history.drop(columns=["ia_dino", "ia_dino_shots"])
    assert not {"IA_dino", "IA_dino_shots", "IAD_dino"} & set(tables.session_figures(plain, 1, LEARNED, 200))


def test_memorization_and_class_retention_figures_on_known_scores():
    """IA_shots, the memorization gap, the copy rate, IAD_shots, the class TA drop and class accuracy, by hand."""
    s0 = pd.DataFrame(
        _records(0, "concept", "a", ia=[0.6] * 4, ia_shots=[0.9] * 4, copied=[1, 1, 1, 0])
        + _records(0, "class", "cat", drift=[0.1] * 4, ta=[0.2] * 4, class_correct=[1, 0, 0, 1])
        + _records(0, "base_class", "cat", ta=[0.35, 0.3, 0.35, 0.3], class_correct=[1, 1, 1, 1])
        + _records(0, "base_class_for_concept", "a", ia=[0.2] * 4)
        + _records(0, "class_for_concept", "a", ia=[0.3] * 4)
    )
    s1 = s0.assign(session=1)
    s1.loc[s1.kind == "concept", "ia"] = 0.5
    s1.loc[s1.kind == "concept", "ia_shots"] = 0.7
    history = pd.concat([s0, s1], ignore_index=True)
    rows = tables.session_rows(s1, history, 1, {"a": 0}, {"cat": 0}, 200)
    assert _value(rows, 1, "a", "IA_shots") == pytest.approx(0.7)
    assert _value(rows, 1, "a", "memorization_gap") == pytest.approx(0.2)  # 0.7 - 0.5
    assert _value(rows, 1, "a", "copy_rate") == pytest.approx(0.75)
    assert _value(rows, 1, "a", "IAD") == pytest.approx(0.1)  # 0.6 - 0.5
    assert _value(rows, 1, "a", "IAD_shots") == pytest.approx(0.2)  # 0.9 - 0.7
    assert _value(rows, 1, "cat", "class_TA_base") == pytest.approx(0.325)
    assert _value(rows, 1, "cat", "class_TA_drop") == pytest.approx(0.125)  # paired: 0.15, 0.1, 0.15, 0.1
    assert _value(rows, 1, "cat", "class_accuracy") == pytest.approx(0.5)
    assert _value(rows, 1, "cat", "class_accuracy_base") == pytest.approx(1.0)
    summary = tables.summarize(history, pd.DataFrame(), {"a": 0}, {"drift_seed_scale": 0.5}, 200)
    for metric, expected in (
        ("IA", 0.5),
        ("IA_shots", 0.7),
        ("memorization_gap", 0.2),
        ("copy_rate", 0.75),
        ("IAD", 0.1),
        ("IAD_shots", 0.2),
        ("class_TA_drop", 0.125),
        ("class_accuracy", 0.5),
    ):
        assert summary[metric]["value"] == pytest.approx(expected), metric
    assert set(rows.metric) <= set(METRICS)


def test_class_prompts_come_from_the_class_concepts_in_turn():
    """Real protocols: a class is asked for in its concepts' own prompts, taken in turn, each once, as many as one
    concept's evaluation has."""
    import torch

    from lfsbench.concepts import Concept
    from lfsbench.evaluation.plan import class_templates

    x = torch.zeros(1, 3, 4, 4)
    cats = [
        Concept("a", "cat", "<new1>", x, x, ["a {} on a sofa", "a {} in the snow", "a {} on the beach"]),
        Concept("b", "cat", "<new2>", x, x, ["a {} in a box", "a {} in the snow"]),
        Concept("c", "dog", "<new3>", x, x, ["a {} in a park"]),
    ]
    assert class_templates("cat", cats) == ["a {} on a sofa", "a {} in a box", "a {} in the snow"]
    assert class_templates("dog", cats) == ["a {} in a park"]


class _FakeRun:
    """What the paired comparison reads of a run: its seed, its scores and when each concept was learned."""

    fold = 0  # the real-data fold (Run.fold): pairs are made within one

    def __init__(self, seed, sessions, method="naive"):
        self.seed = seed
        self.method = method  # settings of one method pair by seed; of two, they do not
        self._scores = _run(sessions)[1]

    def scores(self):
        return self._scores

    def learned_in(self):
        return LEARNED


def test_paired_comparisons_difference_the_same_images():
    from lfsbench.report import aggregate

    def setting(ia_now, shift, seeds):  # a: 0.8 when learned, ia_now + shift * seed after session 1
        return [
            _FakeRun(s, [([0.8] * 4, None, None), ([ia_now + shift * s] * 4, [0.7, 0.6, 0.7, 0.6], None)])
            for s in seeds
        ]

    groups = {"A": setting(0.75, 0.01, [0, 1, 2]), "B": setting(0.55, 0.02, [0, 1, 2]), "C": setting(0.55, 0.02, [1])}
    pairs = aggregate.pairs_table(groups, n_boot=200).set_index(["a", "b", "metric"])
    ab = pairs.loc[("A", "B", "IA")]
    # per seed: a's images differ by 0.2 - 0.01 s, b's by 0 -> IA differences 0.1, 0.095, 0.09: mean 0.095, sd 0.005,
    # t interval 0.095 +- 4.303 * 0.005 / sqrt(3)
    assert ab.difference == pytest.approx(0.095) and ab.seeds == 3 and ab.seeds_agree == 3
    assert (ab.ci_low, ab.ci_high) == pytest.approx((0.095 - 0.01242, 0.095 + 0.01242), abs=1e-4)
    assert ab.interval == "t over seeds" and ab.verdict == "A better"
    iad = pairs.loc[("A", "B", "IAD")]  # a forgot 0.05 - 0.01 s in A, 0.25 - 0.02 s in B: A forgot 0.2 - 0.01 s less
    assert iad.difference == pytest.approx(-0.19) and iad.verdict == "A better"
    bc = pairs.loc[("B", "C", "IA")]  # one common seed (1), the same images: a difference of exactly 0
    assert bc.seeds == 1 and bc.difference == pytest.approx(0) and bc.verdict == "no difference shown"
    assert bc.interval.startswith("bootstrap over image pairs")
    assert ("A", "B", "drift") in pairs.index and ("A", "B", "class_TA_drop") in pairs.index


def test_two_methods_are_compared_unpaired_across_seeds():
    """Seed s of two methods shares no random stream: their comparison is Welch's on each one's per-seed figures,
    which relabelling one method's seeds cannot change; settings of one method stay paired by seed."""
    from scipy import stats

    from lfsbench.report import aggregate

    def setting(ia_by_seed, method):
        return [
            _FakeRun(s, [([0.8] * 4, None, None), ([ia] * 4, [0.7, 0.6, 0.7, 0.6], None)], method)
            for s, ia in enumerate(ia_by_seed)
        ]

    a, b = [0.70, 0.78, 0.74], [0.50, 0.60, 0.52]
    ia_a, ia_b = [(0.8 + x) / 2 for x in a], [(0.8 + x) / 2 for x in b]  # IA: the mean over a and b
    row = aggregate.pairs_table({"A": setting(a, "x"), "B": setting(b, "y")}, n_boot=200).set_index("metric").loc["IA"]
    welch = stats.ttest_ind(ia_a, ia_b, equal_var=False)
    assert row.interval.startswith("Welch") and row.difference == pytest.approx(np.mean(ia_a) - np.mean(ia_b))
    assert (row.ci_low, row.ci_high) == pytest.approx(tuple(welch.confidence_interval(0.95)), abs=1e-9)
    assert row.p_value == pytest.approx(welch.pvalue) and row.seeds_agree == 3
    swapped = {"A": setting(a, "x"), "B": setting([b[0], b[2], b[1]], "y")}
    again = aggregate.pairs_table(swapped, n_boot=200).set_index("metric").loc["IA"]
    assert (again.ci_low, again.ci_high, again.p_value) == pytest.approx((row.ci_low, row.ci_high, row.p_value))
    # one method at two settings: paired by seed, and the pairing matters
    same = aggregate.pairs_table({"A": setting(a, "x"), "B": setting(b, "x")}, n_boot=200).set_index("metric")
    moved = aggregate.pairs_table({"A": setting(a, "x"), "B": swapped["B"]}, n_boot=200).set_index("metric")
    assert same.loc["IA"].interval == "t over seeds"
    assert (same.loc["IA"].ci_low, same.loc["IA"].ci_high) != pytest.approx(
        (moved.loc["IA"].ci_low, moved.loc["IA"].ci_high)
    )


def test_comparisons_are_corrected_within_their_family_and_refuse_verdicts_without_a_range():
    """A study's primary comparisons (every setting against B on IA and IAD) are Holm-corrected together, the rest
    Benjamini-Hochberg among themselves; a metric no run has shown can move (the memorization gap), and a copy rate with
    no copies in either setting, get no verdict and stay out of the correction; a rate with enough copies gets one."""
    from scipy import stats

    from lfsbench.report import aggregate

    def setting(ia_now, shift, seeds, copied=0.0):
        runs = []
        for s in seeds:
            run = _FakeRun(s, [([0.8] * 4, None, None), ([ia_now + shift * s] * 4, [0.7, 0.6, 0.7, 0.6], None)])
            concept = run._scores.kind == "concept"
            run._scores.loc[concept, "copied"] = np.where(run._scores[concept].seed % 2 == 0, copied, 0.0)
            runs.append(run)
        return runs

    groups = {"A": setting(0.75, 0.01, [0, 1, 2]), "B": setting(0.55, 0.02, [0, 1, 2], copied=1.0)}
    groups["C"] = setting(0.55, 0.02, [0, 1, 2])
    primary = aggregate.PrimaryFamily(against=("B",), metrics=("IA", "IAD"))
    pairs = aggregate.pairs_table(groups, n_boot=200, primary=primary).set_index(["a", "b", "metric"])
    ab = pairs.loc[("A", "B", "IA")]  # per-seed differences 0.1, 0.095, 0.09: the t-test of the t-interval
    assert ab.p_value == pytest.approx(stats.ttest_1samp([0.1, 0.095, 0.09], 0).pvalue)
    assert ab.family == "primary" and ab.correction == "Holm" and ab.verdict == "A better"
    family = pairs[(pairs.family == "primary") & pairs.p_adjusted.notna()]
    assert set(family.index) == {(a, b, m) for a, b in (("A", "B"), ("B", "C")) for m in ("IA", "IAD")}
    np.testing.assert_allclose(family.p_adjusted, metrics.holm(family.p_value))
    tested = pairs[(pairs.family == "exploratory") & ~pairs.verdict.str.startswith("no verdict")]
    assert ("A", "C", "IA") in tested.index and (tested.correction == "Benjamini-Hochberg").all()
    np.testing.assert_allclose(tested.p_adjusted, metrics.benjamini_hochberg(tested.p_value))

    gap = pairs.loc[("A", "B", "memorization_gap")]
    assert gap.verdict == f"no verdict: {METRICS['memorization_gap'].unvalidated}" and np.isnan(gap.p_adjusted)
    rare = pairs.loc[("A", "C", "copy_rate")]  # no copies in either: nothing to compare a rate on
    assert rare.verdict.startswith("no verdict: too few events (0 of the 48 images") and np.isnan(rare.p_adjusted)
    copies = pairs.loc[("A", "B", "copy_rate")]  # B copies half its images (12 of 24): a rate with a range
    assert (copies.ones_a, copies.ones_b, copies.images) == (0, 12, 24)
    assert copies.difference == pytest.approx(-0.5) and copies.verdict == "A better"

    # a saturated rate against its opposite (every image copied against none, as the retrieval ceiling against a
    # method): every image is an event, so it gets its verdict
    groups = {"R": setting(0.75, 0.01, [0, 1, 2], copied=1.0), "N": setting(0.75, 0.01, [0, 1, 2])}
    for run in groups["R"]:
        run._scores.loc[run._scores.kind == "concept", "copied"] = 1.0
    # (identical seeds: the image-pair bootstrap's p, at least 2 / (n_boot + 1), so enough draws for BH over the rest)
    saturated = aggregate.pairs_table(groups, n_boot=1000).set_index("metric").loc["copy_rate"]
    assert (saturated.ones_a, saturated.ones_b) == (24, 0) and saturated.verdict == "N better"


def test_ia_right_after_learning_pairs_each_concept_in_the_session_that_taught_it():
    from lfsbench.report import aggregate

    def setting(first):  # a learned at `first` in session 0; b at 0.7 and 0.6 in session 1 in both
        return [_FakeRun(s, [([first] * 4, None, None), ([0.6] * 4, [0.7, 0.6, 0.7, 0.6], None)]) for s in (0, 1)]

    pairs = aggregate.pairs_table({"D": setting(0.9), "E": setting(0.8)}, n_boot=200).set_index("metric")
    # a: 0.9 vs 0.8 when learned, b: the same -> the mean over concepts differs by 0.05; IA now does not differ
    assert pairs.loc["IA_right_after_learning"].difference == pytest.approx(0.05)
    assert pairs.loc["IA"].difference == pytest.approx(0.0)


def test_seeds_without_spread_are_not_shown_as_exact():
    """Seeds that all give the same figure (the base model's, a saturated share) have no spread for a t-interval:
    the summary keeps the widest run interval, and a paired difference identical over seeds keeps its image-pair
    bootstrap instead of a zero-width interval that would always declare a winner. Shares stay within [0, 1]."""
    from lfsbench.report import aggregate

    assert aggregate.combine_seeds([0.405] * 3, [0.398, 0.399, 0.4], [0.41, 0.412, 0.41]) == pytest.approx(
        (0.405, 0.398, 0.412)
    )
    _, lo, hi = aggregate.combine_seeds([0.96, 0.99, 1.0], [0.9, 0.95, 1.0], [1.0, 1.0, 1.0], bounds=(0.0, 1.0))
    assert hi == 1.0 and lo < 0.96  # the unclipped t-interval reaches 1.03
    assert aggregate.combine_seeds([0.96, 0.99, 1.0], [0.9] * 3, [1.0] * 3)[2] > 1.0

    # a's images after session 1: 0.7 and 0.9 in D, 0.7 and 0.8 in E, for both seeds; b's the same in both:
    # IA (mean over the two concepts) differs by 0.025 in each seed
    def setting(now):
        return [_FakeRun(s, [([0.8] * 4, None, None), (now, [0.7, 0.6, 0.7, 0.6], None)]) for s in (0, 1)]

    pairs = aggregate.pairs_table({"D": setting([0.7, 0.9] * 2), "E": setting([0.7, 0.8] * 2)}, n_boot=400)
    ia = pairs.set_index("metric").loc["IA"]
    assert ia.difference == pytest.approx(0.025) and ia.interval == "bootstrap over image pairs (seeds identical)"
    assert ia.ci_low < 0.025 < ia.ci_high  # a's image pairs differ by 0 or 0.1: the interval has width


class _OrderedRun:
    """A run that learned concept a (class cat) and b (class dog) in `order`: the modifier tokens are numbered in
    that order, as load_concepts numbers them, so the same image has another prompt in the other order."""

    fold = 0  # the real-data fold (Run.fold): pairs are made within one
    method = "naive"

    def __init__(self, order, ia_last, seed=0, setting="m"):
        self.seed, self.order, self.setting = seed, order, setting
        self.order_seed = None if order == "ab" else 1
        token = {name: modifier_token(i) for i, name in enumerate(order)}
        noun = {"a": "cat", "b": "dog"}
        recs = []
        for t in range(2):
            for name in order[: t + 1]:
                for rec in _records(t, "concept", name, ia=ia_last[name] if t == 1 else [0.8] * 4):
                    recs.append({**rec, "prompt": f"a {token[name]} {noun[name]} {rec['prompt']}"})
            recs += _records(t, "class", "cat", drift=[0.1] * 4) + _records(t, "base_class", "cat", ta=[0.35] * 4)
        self._scores = pd.DataFrame(recs)

    def scores(self):
        return self._scores

    def learned_in(self):
        return {name: i for i, name in enumerate(self.order)}


def test_runs_in_different_concept_orders_pair_every_image():
    """order_seed renumbers the tokens: "a <new1> dog" in one order is "a <new2> dog" in the other. The paired IA
    difference covers every image (and equals the difference of the two runs' IA); IAD, which covers different
    earlier concepts in the two orders, is not paired across them."""
    from lfsbench.report import aggregate

    ab = _OrderedRun("ab", {"a": [0.7, 0.6, 0.7, 0.6], "b": [0.9] * 4})
    ba = _OrderedRun("ba", {"a": [0.5] * 4, "b": [0.8, 0.9, 0.8, 0.9]})
    values = {run.order: tables.image_values(run.scores(), 1, run.learned_in()) for run in (ab, ba)}
    ia = {order: v[v.metric == "IA"].set_index(tables.IMAGE_KEYS).value for order, v in values.items()}
    assert set(ia["ab"].index) == set(ia["ba"].index) and len(ia["ab"]) == 8
    assert "a <a> cat p0" in set(values["ab"].prompt)  # the token replaced by its concept's name

    pairs = aggregate.pairs_table({"AB": [ab], "BA": [ba]}, n_boot=200).set_index(["a", "b", "metric"])
    # a: 0.65 vs 0.5, b: 0.9 vs 0.85 -> IA 0.775 vs 0.675 over all eight image pairs
    assert pairs.loc[("AB", "BA", "IA")].difference == pytest.approx(0.1)
    assert ("AB", "BA", "IAD") not in pairs.index  # a forgot in AB, b in BA: nothing to pair
    same = aggregate.pairs_table({"AB": [ab], "AB2": [_OrderedRun("ab", {"a": [0.6] * 4, "b": [0.9] * 4})]}, 200)
    # same order: IAD pairs (a forgot 0.8 - 0.65 in AB, 0.8 - 0.6 in AB2)
    assert same.set_index("metric").loc["IAD"].difference == pytest.approx(-0.05)


def test_comparisons_in_every_order_say_where_a_difference_holds_whatever_the_order():
    """Settings X and Y, each run in the written order (ab) and in order 1 (ba): X minus Y within each order, and in
    how many orders its interval is above or below 0. Pairs across orders (X in ab against Y in ba) are not used."""
    from lfsbench.report import aggregate, html

    groups = {
        "X": [_OrderedRun("ab", {"a": [0.7] * 4, "b": [0.9] * 4}, setting="X")],
        "Y": [_OrderedRun("ab", {"a": [0.5] * 4, "b": [0.9] * 4}, setting="Y")],
        "X [order 1]": [_OrderedRun("ba", {"a": [0.6] * 4, "b": [0.9] * 4}, setting="X")],
        "Y [order 1]": [_OrderedRun("ba", {"a": [0.6] * 4, "b": [0.7] * 4}, setting="Y")],
    }
    pairs = aggregate.pairs_table(groups, n_boot=200)
    table = aggregate.order_pairs_table(groups, pairs).set_index("metric")
    assert set(zip(table.a, table.b, strict=True)) == {("X", "Y")}
    assert (table.n == 2).all() and table.orders.eq("written 1").all()
    ia = table.loc["IA"]  # a differs by 0.2 in ab, b by 0.2 in ba: +0.1 over the eight images in both orders
    assert ia.differences == "+0.1000 +0.1000" and (ia.above, ia.below) == (2, 0)
    iad = table.loc["IAD"]  # ab: a forgot 0.1 in X, 0.3 in Y; ba: b forgot -0.1 in X, 0.1 in Y
    assert iad["min"] == pytest.approx(-0.2) and iad["max"] == pytest.approx(-0.2) and iad.below == 2
    ta = table.loc["TA"]  # the same TA everywhere: no order excludes 0
    assert (ta.above, ta.below) == (0, 0)
    shown = html.display_order_pairs(table.reset_index()).set_index(["A", "B"])
    assert shown.loc[("X", "Y"), "IA"] == "**+0.100 to +0.100 (2 > 0; 2 orders)**"
    assert "none excludes 0" in shown.loc[("X", "Y"), "TA"] and "**" not in shown.loc[("X", "Y"), "TA"]
    # a metric no run has shown can move gets no verdict in any order, so none across orders either
    refused = table.loc["memorization_gap"]
    assert refused.no_verdict == METRICS["memorization_gap"].unvalidated and table.loc["IA"].no_verdict == ""
    assert shown.loc[("X", "Y"), METRICS["memorization_gap"].short].endswith(", no verdict")
