"""Evidence beside the paper's metric: chance level, decision metrics, paired bootstrap
intervals, temperature calibration, and the report that shows them."""

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from tao_keras import calibration, intervals, metrics
from tao_keras.training import reports

NAMES = ["BZ", "AGN", "CV", "OTHER", "SN", "NT"]


def sklearn_max_f1(is_positive, scores):
    precision, recall, _ = precision_recall_curve(is_positive, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return f1.max()


def test_max_f1_equals_the_precision_recall_curve_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        y = rng.random(n) < 0.4
        if not y.any():
            continue
        scores = np.round(rng.random(n), int(rng.integers(1, 3)))  # many ties
        assert metrics.max_f1(y, scores) == pytest.approx(sklearn_max_f1(y, scores), abs=1e-12)


def test_weighted_max_f1_equals_the_sample_with_repeated_objects():
    rng = np.random.default_rng(1)
    y, scores = rng.random(30) < 0.3, np.round(rng.random(30), 2)
    weights = rng.integers(0, 4, (5, 30))
    order, ends = metrics.ranked(scores)
    got = metrics.max_f1_weighted(y, order, ends, weights)
    for w, value in zip(weights, got):
        repeated = np.repeat(np.arange(30), w)
        expected = metrics.max_f1(y[repeated], scores[repeated]) if y[repeated].any() else np.nan
        assert value == pytest.approx(expected, nan_ok=True)


def test_chance_level_is_what_random_scores_get_on_those_class_counts():
    labels = np.repeat(np.arange(6), 2)  # the main job's old test split: 2 objects per class
    rng = np.random.default_rng(3)
    random_means = [
        metrics.evaluate(labels, rng.random((12, 6)), NAMES)["mean_f1"] for _ in range(400)
    ]
    result = metrics.evaluate(labels, rng.random((12, 6)), NAMES)
    assert result["chance_mean_f1"] == pytest.approx(np.mean(random_means), abs=0.015)
    assert 0.40 < result["chance_mean_f1"] < 0.52  # far above 1/6: the max rewards chance
    assert result["chance_mean_f1_p95"] == pytest.approx(np.quantile(random_means, 0.95), abs=0.03)
    # more objects per class: chance falls towards the positives' share
    assert metrics.chance_level([45] * 6)["mean_f1"] < 0.32
    # fixed seed: the same counts give the same numbers
    assert metrics.chance_level([3, 5, 8]) == metrics.chance_level([3, 5, 8])


def test_evaluate_gives_accuracy_macro_f1_and_small_classes():
    labels = [0, 0, 1, 1, 1, 2]
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]] * 2)
    r = metrics.evaluate(labels, p, ["A", "B", "C"])
    predicted = p.argmax(1)  # 0, 1, 1, 0, 1, 1
    assert r["accuracy"] == pytest.approx(np.mean(predicted == labels))
    # F1 of the decisions: A 1/2 (P 1/2, R 1/2), B 2/3 (P 1/2, R 2/3 -> 4/7), C 0
    assert r["macro_f1"] == pytest.approx((0.5 + 4 / 7 + 0.0) / 3)
    assert r["small_classes"] == ["A", "B", "C"]
    assert r["support"] == {"A": 2, "B": 3, "C": 1}


def test_paired_bootstrap_of_identical_models_has_a_zero_difference():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(6), 20)
    p = rng.random((120, 6))
    out = intervals.paired(labels, {"forest": p, "copy": p.copy()}, reference="forest")
    assert out["copy"]["difference"] == 0.0 and out["copy"]["difference_ci"] == [0.0, 0.0]
    lo, hi = out["forest"]["ci"]
    assert lo <= out["forest"]["mean_f1"] <= hi + 0.02  # the point estimate inside (max-F1
    # rises a little on resamples: repeated objects)
    assert out == intervals.paired(labels, {"forest": p, "copy": p}, reference="forest")


def test_paired_bootstrap_separates_a_better_model_and_not_noise():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(6), 30)
    noise = rng.random((180, 6))
    good = np.eye(6)[labels] + 1.2 * rng.random((180, 6))
    out = intervals.paired(labels, {"forest": noise, "good": good}, reference="forest")
    assert out["good"]["difference_ci"][0] > 0.2 and out["good"]["p_not_better"] == 0.0
    other_noise = rng.random((180, 6))
    out = intervals.paired(labels, {"forest": noise, "noise": other_noise}, reference="forest")
    lo, hi = out["noise"]["difference_ci"]
    assert lo < 0 < hi  # two random scorings: no difference claimed
    point = metrics.evaluate(labels, good, NAMES)["mean_f1"]
    assert intervals.paired(labels, {"good": good})["good"]["mean_f1"] == pytest.approx(point)


def test_strata_average_the_seeds():
    rng = np.random.default_rng(6)
    labels = np.tile(np.repeat(np.arange(3), 10), 2)
    p = rng.random((60, 3))
    strata = np.repeat([0, 1], 30)
    out = intervals.paired(labels, {"m": p}, strata=strata, draws=200)
    each = [metrics.evaluate(labels[s == strata], p[s == strata], "ABC")["mean_f1"] for s in (0, 1)]
    assert out["m"]["mean_f1"] == pytest.approx(np.mean(each))


def test_aligned_keeps_the_objects_every_model_scored():
    a = {"object_id": ["x", "y", "z"], "label": [0, 1, 2], "probabilities": np.eye(3).tolist()}
    b = {"object_id": ["z", "x"], "label": [2, 0], "probabilities": [[0, 0, 1], [1, 0, 0]]}
    ids, labels, probabilities = intervals.aligned({"a": a, "b": b})
    assert ids == ["x", "z"] and labels.tolist() == [0, 2]
    np.testing.assert_array_equal(probabilities["a"], probabilities["b"])
    wrong = dict(b, label=[1, 0])
    with pytest.raises(ValueError, match="labels differ"):
        intervals.aligned({"a": a, "b": wrong})


def overconfident(seed=7, n=600, classes=4):
    """Labels drawn from calibrated probabilities, then the probabilities sharpened (T=1/3)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.2, (n, classes))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in true_p])
    return labels, calibration.apply_temperature(true_p, 1 / 3)


def test_temperature_lowers_the_nll_of_an_overconfident_model():
    labels, p = overconfident()
    t = calibration.fit_temperature(labels, p)
    assert 2.4 < t < 3.8  # undoes the sharpening (1/3) up to sampling noise
    after = calibration.apply_temperature(p, t)
    assert calibration.negative_log_likelihood(labels, after) < 0.9 * (
        calibration.negative_log_likelihood(labels, p)
    )
    np.testing.assert_allclose(after.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(after.argmax(1), p.argmax(1))  # never changes the class
    summary = calibration.summary(labels, p, t)
    assert summary["after"]["ece"] < summary["before"]["ece"] / 2
    assert sum(b["count"] for b in summary["before"]["bins"]) == len(labels)


def test_graph_temperature_equals_numpy():
    _, p = overconfident(n=20)
    graph = np.asarray(calibration.scale_log_probabilities(p.astype("float32"), 2.5))
    np.testing.assert_allclose(graph, calibration.apply_temperature(p, 2.5), atol=1e-6)


def evaluated(labels, p):
    return metrics.evaluate(labels, p, NAMES)


def test_report_shows_chance_intervals_accuracy_and_warns_on_small_splits(tmp_path):
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(6), 4)  # 4 objects per class: too few
    ids = [f"obj{i}" for i in range(24)]
    forest, net = rng.random((24, 6)), np.eye(6)[labels] + rng.random((24, 6))
    predictions = {
        name: {"val": {"object_id": ids, "label": labels.tolist(), "probabilities": p.tolist()}}
        for name, p in (("forest", forest), ("net", net))
    }
    temperature = calibration.fit_temperature(labels, net / net.sum(1, keepdims=True))
    cal = {"net": {"temperature": temperature, "val": calibration.summary(labels, net, 1.0)}}
    text = reports.write(
        str(tmp_path),
        {"forest": {"val": evaluated(labels, forest)}, "net": {"val": evaluated(labels, net)}},
        "multiclass",
        NAMES,
        predictions=predictions,
        calibration=cal,
        reference="forest",
    )
    assert "> **Warning** — Validation set: fewer than 10 objects of BZ 4" in text
    assert "| model | mean max-F1 | 95% CI | chance | Δ vs forest [95% CI] |" in text
    chance = metrics.chance_level([4] * 6)
    assert f"{100 * chance['mean_f1']:.2f} ({100 * chance['mean_f1_p95']:.2f})" in text
    net_row = next(line for line in text.splitlines() if line.startswith("| net | "))
    assert "| 100.00 |" in net_row  # one-hot plus noise below one: every arg-max is right
    assert "## Calibration" in text and (tmp_path / "reliability-net.png").stat().st_size > 5000
    import json

    saved = json.load(open(tmp_path / "report.json"))
    assert saved["intervals"]["val"]["net"]["difference_ci"][0] > 0
    assert saved["reference"] == "forest" and saved["predictions"]["net"]["val"]["object_id"] == ids


def test_learning_curve_pools_the_seeds_test_objects_for_the_interval():
    from tools import learning_curve

    rng = np.random.default_rng(9)
    per_seed = []
    for seed in range(3):
        labels = np.repeat(np.arange(6), 15)
        ids = [f"s{seed}-{i}" for i in range(90)]
        per_seed.append(
            {
                learning_curve.RF: {
                    "object_id": ids,
                    "label": labels.tolist(),
                    "probabilities": rng.random((90, 6)).tolist(),
                },
                "TAO-Net": {
                    "object_id": ids[::-1],  # another order: aligned by object id
                    "label": labels[::-1].tolist(),
                    "probabilities": (np.eye(6)[labels] + rng.random((90, 6)))[::-1].tolist(),
                },
            }
        )
    pooled = learning_curve.pooled_intervals(per_seed)
    assert pooled["_objects"] == 270
    assert pooled["TAO-Net"]["difference_ci"][0] > 0.3
    assert list(pooled)[2] == learning_curve.RF  # the reference first
    text = learning_curve.markdown(
        {150: {"TAO-Net": {"test": (0.8, 0.01, 3), "test_chance_mean_f1": (0.3, 0.0, 3)}}},
        {150: pooled},
    )
    row = next(line for line in text.splitlines() if "| TAO-Net |" in line)
    low, high = pooled["TAO-Net"]["ci"]
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in row and "| 30.0 ± 0.0 |" in row


def test_late_fusion_row_averages_the_forest_and_tao_net_on_their_common_objects(tmp_path):
    import json

    from tao_keras import late_fusion
    from tools import learning_curve

    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(6), 10)
    ids = [f"o{i}" for i in range(60)]
    forest = np.eye(6)[labels] * 0.4 + rng.random((60, 6))
    network = np.eye(6)[labels] * 0.4 + rng.random((60, 6))
    split = {"object_id": ids, "label": labels.tolist()}
    reports_of = {
        "light_curve_rf": {learning_curve.RF: forest},
        "taonet": {learning_curve.JOINT: network[::-1]},  # another order, one object fewer
    }
    for part, models in reports_of.items():
        (tmp_path / part).mkdir()
        predictions = {}
        for model, p in models.items():
            these = split if part == "light_curve_rf" else {k: v[::-1] for k, v in split.items()}
            entry = {**these, "probabilities": p.tolist()}
            if part == "taonet":
                entry = {k: v[:-1] for k, v in entry.items()}  # drops object o0
            predictions[model] = {"val": entry, "test": entry}
        (tmp_path / part / "report.json").write_text(json.dumps({"predictions": predictions}))
    fused = learning_curve.run_predictions(str(tmp_path))[learning_curve.FUSED]["test"]
    assert fused["object_id"] == sorted(ids[1:])
    row = fused["object_id"].index("o7")
    np.testing.assert_allclose(fused["probabilities"][row], (forest[7] + network[7]) / 2)
    scores = learning_curve.fused_scores(
        str(tmp_path), {learning_curve.RF: {"minutes": 1.0}, learning_curve.JOINT: {"minutes": 7.5}}
    )
    expected = metrics.evaluate(
        np.asarray(fused["label"]), np.asarray(fused["probabilities"]), NAMES
    )["mean_f1"]
    assert scores["test"] == pytest.approx(expected) and scores["minutes"] == 8.5
    with pytest.raises(ValueError, match="labels differ"):
        late_fusion.mean_probabilities(
            {**split, "probabilities": forest.tolist()},
            {**split, "label": labels[::-1].tolist(), "probabilities": network.tolist()},
        )


def test_a_finetuned_task_gets_its_table_intervals_and_early_curve(tmp_path):
    import json

    from tools import learning_curve

    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 20)
    split = {"object_id": [f"o{i}" for i in range(40)], "label": labels.tolist()}
    task_runs, predictions = [], {150: []}
    for seed in (1, 2):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        report = {"results": {}, "predictions": {}, "early_f1": {}, "stage_seconds": {}}
        for k, model in enumerate((learning_curve.RF, learning_curve.JOINT)):
            p = np.eye(2)[labels] * (0.2 + 0.2 * k) + rng.random((40, 2))
            scores = metrics.evaluate(labels, p, ["SN", "NT"])
            report["results"][model] = {"val": scores, "test": scores}
            report["predictions"][model] = {
                s: {**split, "probabilities": p.tolist()} for s in ("val", "test")
            }
            report["early_f1"][model] = {"test": {"all": scores, "10": scores, "5": scores}}
        report["stage_seconds"][learning_curve.JOINT] = 120.0
        report["seconds"] = 180.0
        (run / "report.json").write_text(json.dumps(report))
        # a finished run is reused; a finetuned task keeps its trainer's forest, multiclass not
        found = learning_curve.taonet(None, str(run), seed, 0, "", "supernova", "multiclass-run")
        assert learning_curve.RF in found
        assert learning_curve.RF not in learning_curve.taonet(None, str(run), seed, 0, "")
        found[learning_curve.FUSED] = learning_curve.fused_scores(
            str(run), found, "supernova", parts=("",)
        )
        task_runs.append(
            {"size": 150, "seed": seed, "models": found, "early": learning_curve.early_of(str(run))}
        )
        predictions[150].append(
            {m: p["test"] for m, p in learning_curve.run_predictions(str(run), ("",)).items()}
        )
    learning_curve.write_task_table(
        str(tmp_path), "learning_curve-T", "supernova", task_runs, predictions
    )
    written = json.load(open(tmp_path / "learning_curve-T-supernova.json"))
    joint = written["summary"]["150"][learning_curve.JOINT]
    assert joint["test"][2] == 2 and joint["minutes"][0] == 2.0  # two seeds; the finetune's cost
    boot = written["pooled_test_intervals"]["150"]
    assert boot["_objects"] == 80 and "difference_ci" in boot[learning_curve.FUSED]
    assert list(written["early_test"]["150"][learning_curve.JOINT]) == ["5", "10", "all"]


def test_several_trainings_of_a_model_widen_its_interval_by_their_spread():
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(6), 20)
    forest = np.eye(6)[labels] * 0.3 + rng.random((120, 6))
    good = np.eye(6)[labels] * 0.8 + rng.random((120, 6))
    poor = np.eye(6)[labels] * 0.1 + rng.random((120, 6))
    strata = np.repeat([0, 1], 60)
    one = intervals.paired(labels, {"rf": forest, "net": good}, "rf", strata, draws=400)
    # Two identical trainings are one training: the same estimate and intervals
    same = intervals.paired(labels, {"rf": forest, "net": [good, good]}, "rf", strata, draws=400)
    for key, value in one["net"].items():
        assert same["net"][key] == pytest.approx(value, abs=1e-12)
    assert same["rf"] == one["rf"]
    # Trainings that disagree: the mean of their scores, and an interval that holds the spread
    both = intervals.paired(labels, {"rf": forest, "net": [good, poor]}, "rf", strata, draws=400)
    apart = {
        name: intervals.paired(labels, {"rf": forest, "net": p}, "rf", strata, draws=400)["net"]
        for name, p in (("good", good), ("poor", poor))
    }
    assert both["net"]["mean_f1"] == pytest.approx(
        (apart["good"]["mean_f1"] + apart["poor"]["mean_f1"]) / 2
    )
    assert both["net"]["difference"] == pytest.approx(
        (apart["good"]["difference"] + apart["poor"]["difference"]) / 2
    )
    width = {k: v["difference_ci"][1] - v["difference_ci"][0] for k, v in apart.items()}
    spread = apart["good"]["mean_f1"] - apart["poor"]["mean_f1"]
    assert spread > 0.1
    assert (
        both["net"]["difference_ci"][1] - both["net"]["difference_ci"][0]
        > max(width.values()) + spread / 2
    )
    assert both["rf"] == one["rf"]  # the reference's draws do not depend on the trainings
    # The same models in another order (or beside another model of several trainings): the
    # same intervals
    turned = intervals.paired(
        labels, {"other": [poor, good], "net": [good, poor], "rf": forest}, "rf", strata, draws=400
    )
    assert turned["net"] == both["net"]
    with pytest.raises(ValueError, match="trainings, N, C"):
        intervals.paired(labels, {"net": good[None, None]})


def _write_report(run_dir, scores_of, split_ids, labels, seconds=60.0):
    """A finished run's report.json as trainers and the forest write it: {model: [N, C]}."""
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    report = {"results": {}, "predictions": {}, "stage_seconds": {}, "seconds": seconds}
    for model, p in scores_of.items():
        scores = metrics.evaluate(labels, p, NAMES)
        report["results"][model] = {"val": scores, "test": scores}
        report["predictions"][model] = {
            s: {"object_id": split_ids, "label": labels.tolist(), "probabilities": p.tolist()}
            for s in ("val", "test")
        }
        report["stage_seconds"][model] = seconds
    (run_dir / "report.json").write_text(json.dumps(report))


def test_a_survey_with_several_trainings_averages_them_and_pools_them(tmp_path, monkeypatch):
    import shlex

    from tools import learning_curve as lc

    rng = np.random.default_rng(12)
    labels = np.repeat(np.arange(6), 10)
    ids = [f"o{i}" for i in range(60)]
    forest = np.eye(6)[labels] * 0.3 + rng.random((60, 6))
    _write_report(tmp_path / "light_curve_rf", {lc.RF: forest}, ids, labels)
    joints, commands = {}, []

    def trainer(command, **_):  # a trainer run: a report in its --output folder
        commands.append(command)
        seed = int(command[command.index("--seed") + 1])
        joints[seed] = np.eye(6)[labels] * (0.2 + 0.3 * (seed == 7)) + rng.random((60, 6))
        other = rng.random((60, 6))
        output = command[command.index("--output") + 1]
        _write_report(
            tmp_path / output, {"DenseNet (triplets)": other, lc.JOINT: joints[seed]}, ids, labels
        )
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(lc.subprocess, "run", trainer)
    models, trainings, predictions = lc.survey_rows(
        "records", str(tmp_path), 7, ["survey", "1000"], 0, "--epochs=2"
    )
    assert [c[c.index("--seed") + 1] for c in commands] == ["7", "1000"]
    assert [c[c.index("--output") + 1] for c in commands] == [
        str(tmp_path / "taonet"),
        str(tmp_path / "taonet-init1000"),
    ]
    assert shlex.join(commands[0]).endswith("--epochs=2")
    score = {s: metrics.evaluate(labels, joints[s], NAMES)["mean_f1"] for s in joints}
    assert trainings["1000"][lc.JOINT]["test"] == pytest.approx(score[1000])
    assert models[lc.JOINT]["test"] == pytest.approx((score[7] + score[1000]) / 2)
    assert models[lc.JOINT]["minutes"] == pytest.approx(2.0)  # its stage and the one before
    assert lc.RF not in trainings["survey"] and lc.FUSED in trainings["survey"]
    ensemble = lc.ensemble_name(2)
    expected = metrics.evaluate(labels, (joints[7] + joints[1000]) / 2, NAMES)["mean_f1"]
    assert models[ensemble]["test"] == pytest.approx(expected)
    assert len(predictions[lc.JOINT]) == 2 and isinstance(predictions[lc.RF], dict)
    # Finished trainings are reused, not rerun
    again = lc.survey_rows("records", str(tmp_path), 7, ["survey", "1000"], 0, "--epochs=2")
    assert len(commands) == 2 and again[0][lc.JOINT] == models[lc.JOINT]
    pooled = lc.pooled_intervals([predictions, predictions])
    assert pooled[lc.JOINT]["mean_f1"] == pytest.approx(models[lc.JOINT]["test"])
    assert pooled[ensemble]["mean_f1"] == pytest.approx(expected)
    runs = [{"trainings": trainings}]
    sd, surveys = lc.training_spread(runs)[lc.JOINT]
    assert surveys == 1 and sd == pytest.approx(abs(score[7] - score[1000]) / np.sqrt(2))
    # One training: the rows and predictions of a single run, as before
    single, _, one = lc.survey_rows("records", str(tmp_path), 7, ["survey"], 0, "--epochs=2")
    assert single[lc.JOINT]["test"] == pytest.approx(score[7]) and "per_class" in single[lc.JOINT]
    assert isinstance(one[lc.JOINT], dict) and lc.ensemble_name(1) not in single


def test_init_seeds_must_not_be_overridden_by_the_trainer_flags():
    from tools import learning_curve as lc

    lc.check_init_seeds(["survey", "1000"], "--photometry --epochs=3")
    for seeds, flags_text, message in (
        (["survey", "1000"], "--seed=5", "sets --seed"),
        (["survey"], "--photometry --seed 5", "sets --seed"),
        (["survey", "survey"], "", "distinct"),
        (["first"], "", "neither"),
    ):
        with pytest.raises(lc.BadFlags, match=message):
            lc.check_init_seeds(seeds, flags_text)


def test_the_early_curve_of_several_trainings_averages_the_networks_not_the_forests(tmp_path):
    import json

    from tools import learning_curve as lc

    def curve(**by_nights):
        return {"test": {n: {"mean_f1": v} for n, v in by_nights.items()}}

    for folder, forest, joint in (("taonet", 0.5, 0.6), ("taonet-init1000", 0.4, 0.7)):
        (tmp_path / folder).mkdir()
        early = {
            lc.RF: curve(**{"5": forest, "all": forest + 0.1}),
            lc.JOINT: curve(**{"3": joint - 0.1, "5": joint, "all": joint + 0.1}),
        }
        (tmp_path / folder / "report.json").write_text(json.dumps({"early_f1": early}))
    both = lc.early_of_trainings(str(tmp_path), ["survey", "1000"])
    assert both[lc.JOINT]["test"]["5"]["mean_f1"] == pytest.approx(0.65)
    assert list(both[lc.JOINT]["test"]) == ["3", "5", "all"]
    # the forest of the survey's own seed (the learning curve's), not the mean of the trainers'
    assert both[lc.RF]["test"]["all"]["mean_f1"] == pytest.approx(0.6)
    assert lc.early_of_trainings(str(tmp_path), ["1000"])[lc.RF]["test"]["5"]["mean_f1"] == 0.4
    assert lc.early_of_trainings(str(tmp_path), ["2000"]) == {}
    table = lc.early_markdown(lc.early_summary([{"size": 150, "early": both}]), "multiclass")
    assert "| TAO-Net, joint + double supervision | 55.0 | 65.0 | 75.0 |" in table


def test_a_tag_is_judged_against_another_on_the_same_objects_and_trainings(tmp_path):
    from tools import learning_curve as lc

    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(6), 20)
    ids = [f"o{i}" for i in range(120)]
    noise = {(seed, init): rng.random((120, 6)) for seed in (1, 2) for init in ("survey", "9")}
    for tag, boost in (("base", 0.0), ("same", 0.0), ("better", 0.6)):
        for (seed, init), p in noise.items():
            folder = lc.tag_root(str(tmp_path), tag, 150, seed)
            joint = p + boost * np.eye(6)[labels] * rng.random((120, 1))
            _write_report(tmp_path / folder / lc.init_folder(init), {lc.JOINT: joint}, ids, labels)
    inits = ["survey", "9"]
    same = lc.against_tag(str(tmp_path), "same", "base", 150, [1, 2], ["survey"])
    assert same["difference"] == 0.0 and same["difference_ci"] == [0.0, 0.0]
    assert same["objects"] == 240
    # two trainings a tag: each tag's trainings are resampled on their own (conservative)
    same = lc.against_tag(str(tmp_path), "same", "base", 150, [1, 2], inits)
    assert same["difference"] == 0.0
    assert same["difference_ci"][0] < 0 < same["difference_ci"][1]
    better = lc.against_tag(str(tmp_path), "better", "base", 150, [1, 2], inits)
    assert better["difference_ci"][0] > 0 and better["p_not_better"] == 0.0
    assert better["difference"] == pytest.approx(better["mean_f1"] - better["other_mean_f1"])
    # the same seeds and trainings as the mean of each tag's surveys and trainings
    expected = np.mean(
        [metrics.evaluate(labels, noise[(s, i)], NAMES)["mean_f1"] for s in (1, 2) for i in inits]
    )
    assert better["other_mean_f1"] == pytest.approx(expected)
    assert "+" in lc.against_markdown(150, better) and "tag base's" in lc.against_markdown(
        150, better
    )
    with pytest.raises(
        lc.BadFlags, match="tag better: no TAO-Net joint .*better/n150-seed1/taonet-init10"
    ):
        lc.against_tag(str(tmp_path), "better", "base", 150, [1, 2], ["survey", "10"])
