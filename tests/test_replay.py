"""The budgeted-sweep policy (analysis/policy.py) as a pure function, and `tmx replay` run as a user runs it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, run_tmx

from analysis.policy import (TableError, budget_pairs, check_table, predict_matrix, proxy_top_k_policy, random_policy,
                             replay, replay_metrics, run_policy)  # fmt: skip


def planted(seed: int, targets: int = 16, sources: int = 12, proxy_noise: float = 1.0) -> pd.DataFrame:
    """A complete table: value = a_t + b_s + u_t . v_s (rank 2) + noise; `proxy.score` = the value centred within its
    target plus noise of `proxy_noise` x the within-target sd; `proxy.flat` uninformative."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, targets), rng.normal(0, 0.8, sources)
    u, v = rng.normal(0, 0.7, (targets, 2)), rng.normal(0, 0.7, (sources, 2))
    value = a[:, None] + b[None, :] + u @ v.T + rng.normal(0, 0.2, (targets, sources))
    centred = value - value.mean(axis=1, keepdims=True)
    proxy = centred + rng.normal(0, proxy_noise * centred.std(), value.shape)
    t, s = np.meshgrid(np.arange(targets), np.arange(sources), indexing="ij")
    return pd.DataFrame({"target": [f"T{i}" for i in t.ravel()], "source": [f"S{j}" for j in s.ravel()],
                         "value": value.ravel(), "proxy.score": proxy.ravel(),
                         "proxy.flat": rng.normal(size=value.size)})  # fmt: skip


def _reveal(table: pd.DataFrame, calls: list | None = None):
    values = dict(zip(zip(table["target"], table["source"]), table["value"]))

    def reveal(pairs: list[tuple[str, str]]) -> list[float]:
        if calls is not None:
            calls.extend(pairs)
        return [values[pair] for pair in pairs]

    return reveal


# ---------------------------------------------------------------------------------------------------------------
# The pure functions


def test_replay_metrics_on_a_hand_made_table():
    table = pd.DataFrame({"target": ["a"] * 4 + ["b"] * 4, "source": list("wxyz") * 2,
                          "value": [4.0, 3, 2, 1, 10, 20, 30, 40]})  # fmt: skip
    m = replay_metrics(table, [("a", "x"), ("a", "z"), ("b", "w")])
    assert m["pairs_run"] == 3 / 8
    assert m["best_found"] == 0.0  # a's best is w, b's is z: neither run
    assert m["top3_recall"] == pytest.approx((1 / 3 + 0) / 2)  # a: x of {w, x, y}; b: w not in {z, y, x}
    assert m["mean_regret"] == pytest.approx(((4 - 3) + (40 - 10)) / 2)
    low = replay_metrics(table, [("a", "z"), ("b", "y")], higher_is_better=False)
    assert low["best_found"] == 0.5 and low["mean_regret"] == pytest.approx((0 + (30 - 10)) / 2)
    blind = replay_metrics(table, [("a", "w")])  # b has nothing run: the regret of a blind pick, best - mean
    assert blind["best_found"] == 0.5 and blind["mean_regret"] == pytest.approx((0 + (40 - 25)) / 2)


def test_budgeted_policy_reveals_each_pair_once_within_budget_and_predicts_the_rest():
    table = planted(0)
    calls: list = []
    result = run_policy(table.drop(columns="value"), _reveal(table, calls), 0.2, seed=0)
    n = budget_pairs(len(table), 0.2)
    assert len(calls) == n == len(result.order) and len(set(calls)) == n
    assert list(zip(result.order["target"], result.order["source"])) == calls
    first = result.order[result.order["phase"] == "proxy"]  # every target's top proxy source first
    assert first["target"].nunique() == 16 and first["step"].max() == 15
    p = result.predicted.set_index(["target", "source"])
    run = p.loc[calls]
    assert run["measured"].all() and np.allclose(run["mean"], table.set_index(["target", "source"]).loc[calls, "value"])
    unrun = p[~p["measured"]]
    assert len(unrun) == len(table) - n
    assert (unrun["lower"] < unrun["mean"]).all() and (unrun["mean"] < unrun["upper"]).all()
    assert np.allclose(p.groupby("target")["p_best"].sum(), 1.0)
    rec = result.recommended(k=2)
    assert len(rec) == 32 and set(rec["rank"]) == {1, 2}


def test_budgeted_policy_does_not_depend_on_row_order_and_flips_cleanly_for_lower_is_better():
    table = planted(1)
    base = run_policy(table, _reveal(table), 0.25, seed=3)
    shuffled = table.sample(frac=1, random_state=np.random.RandomState(0)).reset_index(drop=True)
    again = run_policy(shuffled, _reveal(shuffled), 0.25, seed=3)
    pd.testing.assert_frame_equal(base.order, again.order)
    negated = table.assign(value=-table["value"])
    low = run_policy(negated, _reveal(negated), 0.25, higher_is_better=False, seed=3)
    pd.testing.assert_frame_equal(base.order.drop(columns="value"), low.order.drop(columns="value"))
    assert np.allclose(low.predicted["mean"], -base.predicted["mean"])
    assert np.allclose(low.predicted["lower"], -base.predicted["upper"])
    assert low.recommended(2)["source"].tolist() == base.recommended(2)["source"].tolist()


def test_a_larger_budget_reuses_the_pairs_already_run():
    table = planted(6)
    small = run_policy(table, _reveal(table), 0.1, seed=0)
    known = {(t, s): v for t, s, v in small.order[["target", "source", "value"]].itertuples(False)}
    calls: list = []
    large = run_policy(table, _reveal(table, calls), 0.25, seed=0, known=known)
    assert len(large.order) == budget_pairs(len(table), 0.25)
    assert len(calls) == len(large.order) - len(known) and not set(calls) & set(known)
    assert (large.order["phase"].iloc[: len(known)] == "known").all()
    with pytest.raises(ValueError, match="known: pair"):
        run_policy(table, _reveal(table), 0.25, known={("T0", "nope"): 1.0})


def test_the_policy_reveals_a_batch_per_phase_and_round():
    """The live sweep runs each batch at once: the proxies' picks (every target's top source), then one batch per
    round, which the model spreads over targets rather than piling onto one."""
    table = planted(7)
    batches: list = []
    reveal = _reveal(table)
    result = run_policy(table, lambda pairs: batches.append(list(pairs)) or reveal(pairs), 0.25, seed=0, rounds=4)
    assert [len(b) for b in batches][:1] == [16] and len({t for t, _ in batches[0]}) == 16
    assert len(batches) == 1 + 4 and sum(map(len, batches)) == len(result.order) == budget_pairs(len(table), 0.25)
    assert all(len({t for t, _ in b}) > 1 for b in batches[1:])
    assert [p for b in batches for p in b] == list(zip(result.order["target"], result.order["source"]))


def test_predict_matrix_fits_the_known_pairs_and_reveals_nothing():
    table = planted(8)
    result = run_policy(table, _reveal(table), 0.2, seed=0)
    known = {(t, s): v for t, s, v in result.order[["target", "source", "value"]].itertuples(False)}
    predicted = predict_matrix(table.drop(columns="value"), known, seed=0)
    assert predicted["measured"].sum() == len(known)
    assert np.allclose(predicted.loc[predicted["measured"], "mean"], predicted.loc[predicted["measured"], "value"])
    # the same model as the sweep's final fit: the predictions agree up to the bootstrap's draws
    same = predicted.merge(result.predicted, on=["target", "source"])
    assert np.corrcoef(same["mean_x"], same["mean_y"])[0, 1] > 0.95
    # known pairs that already fill a smaller budget: nothing more is revealed
    again = run_policy(table, lambda pairs: pytest.fail(f"revealed {pairs}") if pairs else [], 0.1, known=known)
    assert (again.order["phase"] == "known").all() and len(again.order) == len(known)


def test_baselines_spend_the_same_budget():
    table = planted(2)
    n = budget_pairs(len(table), 0.3)
    rnd = random_policy(table, _reveal(table), 0.3, seed=1)
    top = proxy_top_k_policy(table, _reveal(table), 0.3)
    assert len(rnd.order) == len(top.order) == n
    # proxy-top-k: each target's top floor(n / targets) sources by the combined score, then the best of the rest
    per_target = top.order.groupby("target").size()
    assert per_target.min() >= n // 16 and per_target.max() <= n // 16 + 1


def test_budgeted_intervals_cover_most_unrun_values():
    """The 95% intervals of the unrun pairs hold the true value for most of them (a calibration that can fail)."""
    cover = []
    for seed in range(3):
        table = planted(10 + seed)
        p = run_policy(table, _reveal(table), 0.2, seed=seed).predicted.merge(table, on=["target", "source"])
        p = p[~p["measured"]]
        cover.append(((p["value_y"] >= p["lower"]) & (p["value_y"] <= p["upper"])).mean())
    assert np.mean(cover) > 0.8, cover


def test_a_failed_run_counts_against_the_budget_and_is_not_fitted():
    table = planted(3)
    reveal = _reveal(table)
    result = run_policy(table, lambda pairs: [np.nan if s == "S0" else v for (_, s), v in zip(pairs, reveal(pairs))],
                        0.2, seed=0)  # fmt: skip
    assert len(result.order) == budget_pairs(len(table), 0.2)
    assert np.isfinite(result.predicted["mean"]).all()
    # a target whose every run fails (its baseline failed: no value can be measured) is not tried over and over
    down = run_policy(table, lambda pairs: [np.nan if t == "T0" else v for (t, _), v in zip(pairs, reveal(pairs))],
                      0.25, seed=0)  # fmt: skip
    spent = down.order.groupby("target").size()
    assert spent["T0"] <= 3 and spent.drop("T0").min() >= 1, spent.to_dict()


def test_check_table_names_the_field():
    table = planted(4)
    cases = [
        (table.drop(columns="value"), "value: missing column"),
        (table.drop(columns=["proxy.score", "proxy.flat"]), "proxy.*: no proxy column"),
        (pd.concat([table, table.head(1)]), "target, source: duplicate pair ('T0', 'S0')"),
        (table.assign(value=table["value"].astype(object).where(table.index != 5, "abc")),
         "value: non-numeric entry 'abc' in row 6"),
        (table.assign(same_domain="maybe"), "same_domain: entry 'maybe' in row 1"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(TableError) as e:
            check_table(bad)
        assert str(e.value).startswith(message), str(e.value)
    with pytest.raises(ValueError, match=r"budget: 0 is outside \(0, 1\]"):
        budget_pairs(100, 0)


# ---------------------------------------------------------------------------------------------------------------
# tmx replay


def test_tmx_replay_json_budgeted_beats_random(tmp_path):
    found = {"budgeted": [], "random": [], "proxy_top_k": []}
    regret = {"budgeted": [], "random": []}
    for seed in range(3):
        path = tmp_path / f"planted{seed}.csv"
        planted(100 + seed).to_csv(path, index=False)
        r = run_tmx("replay", str(path), "--budget", "0.2", "--json", "--seed", str(seed), cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert set(out["policies"]) == {"budgeted", "random", "proxy_top_k"}
        for name, m in out["policies"].items():
            assert set(m) == {"pairs_run", "best_found", "top3_recall", "mean_regret"}
            assert 0 < m["pairs_run"] <= 0.2
            found[name].append(m["best_found"])
        for name in regret:
            regret[name].append(out["policies"][name]["mean_regret"])
    assert np.mean(found["budgeted"]) > np.mean(found["random"]), found
    assert np.mean(regret["budgeted"]) < np.mean(regret["random"]), regret


def test_tmx_replay_table_and_lower_is_better(tmp_path):
    table = planted(200)
    table.to_csv(tmp_path / "up.csv", index=False)
    table.assign(value=-table["value"]).to_csv(tmp_path / "down.csv", index=False)
    r = run_tmx("replay", str(tmp_path / "up.csv"), cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    for word in ("budgeted", "random", "proxy_top_k", "best_found", "mean_regret"):
        assert word in r.stdout
    down = run_tmx("replay", str(tmp_path / "down.csv"), "--json", "--lower-is-better", cwd=REPO, timeout=120)
    assert down.returncode == 0, down.stderr
    up = replay(table, 0.2, seed=0)  # the negated values, lower is better: the same choices and metrics
    for name, metrics in json.loads(down.stdout)["policies"].items():
        assert metrics == pytest.approx(up[name]), name


@pytest.mark.parametrize("edit, args, field", [
    (None, ["--budget", "0.2"], "file"),
    (lambda t: t.drop(columns="target"), [], "target"),
    (lambda t: t.drop(columns=["proxy.score", "proxy.flat"]), [], "proxy.*"),
    (lambda t: pd.concat([t, t.tail(1)]), [], "target, source"),
    (lambda t: t.astype({"value": object}).assign(value=lambda d: d["value"].where(d.index != 3, "n.a.")), [], "value"),
    (lambda t: t, ["--budget", "1.5"], "--budget"),
])  # fmt: skip
def test_tmx_replay_bad_input_exits_2_with_one_line(tmp_path, edit, args, field):
    path = tmp_path / "bad.csv"
    if edit is not None:
        edit(planted(5)).to_csv(path, index=False)
    r = run_tmx("replay", str(path), *args, cwd=REPO, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tmx: {path}: {field}: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
