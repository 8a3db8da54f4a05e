"""The tf.data pipeline: per-date choice, triplet and window rules, tasks, balancing,
determinism."""

import collections
import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tao_keras import classes, request_cleanup
from tao_keras.pipeline import augmentation, datasets, dates, model_inputs, normalization, windows
from tfrecords import manifest as manifest_file
from tfrecords import parser


def test_every_chosen_exposure_belongs_to_its_date_and_every_date_appears_once():
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(1, 6, size=rng.integers(3, 25))
        date_index = np.repeat(np.arange(len(counts)), counts)
        choices = set()
        for seed in range(30):
            index = dates.choose_exposures(date_index, len(counts), seed=[seed, 1]).numpy()
            np.testing.assert_array_equal(date_index[index], np.arange(len(counts)))
            choices.add(tuple(index))
        first = dates.choose_exposures(date_index, len(counts)).numpy()
        np.testing.assert_array_equal(first, np.concatenate([[0], np.cumsum(counts)[:-1]]))
        if counts.max() > 1:
            assert len(choices) > 1  # training sees different permutations


def test_random_choice_covers_every_exposure_of_a_date():
    date_index = np.array([0, 0, 0, 0, 1, 2, 2])
    seen = {
        tuple(dates.choose_exposures(date_index, 3, seed=[s, 9]).numpy()[[0, 2]])
        for s in range(200)
    }
    assert {a for a, _ in seen} == {0, 1, 2, 3} and {b for _, b in seen} == {5, 6}


@pytest.mark.parametrize(
    "num_dates, max_date, nt, expected",
    [
        (10, 4, False, [3, 4, 5]),  # before, maximum, after
        (10, 0, False, [0, 1, 2]),  # maximum first: shifted inwards
        (10, 9, False, [7, 8, 9]),  # maximum last
        (3, 1, False, [0, 1, 2]),
        (10, 4, True, [0, 4, 9]),  # NT: first, middle, last
        (3, 0, True, [0, 1, 2]),
    ],
)
def test_triplet_rules(num_dates, max_date, nt, expected):
    assert windows.triplet_dates(num_dates, max_date, nt).numpy().tolist() == expected


@pytest.mark.parametrize(
    "num, end, length, expected",
    [
        (25, None, None, (0, 25)),  # whole sequence
        (25, None, 19, (6, 25)),  # the most recent 19, never the central ones
        (25, 10, 19, (0, 10)),  # the first 10 dates (an object seen for 10 nights)
        (25, 22, 5, (17, 22)),  # cut after date 22, its 5 most recent
        (7, 30, None, (0, 7)),  # asking for more dates than there are
    ],
)
def test_windows_end_at_an_observed_date(num, end, length, expected):
    start, stop = windows.window_bounds(num, end, length)
    assert (int(start), int(stop)) == expected


def test_random_prefixes_cover_every_end_with_the_asked_frequency():
    ends = np.array(
        [int(windows.random_end(12, 0.5, tf.constant([i, 7], tf.int64))) for i in range(2000)]
    )
    assert ends.min() == windows.MIN_DATES and ends.max() == 12
    cut = ends < 12  # cut at 12 is indistinguishable from whole: 0.5 * (1 - 1/10) expected
    assert abs(cut.mean() - 0.5 * 9 / 10) < 0.04
    counts = np.bincount(ends[cut], minlength=12)[windows.MIN_DATES : 12]
    assert counts.min() > 0.6 * counts.mean()  # roughly uniform over 3..11
    assert all(
        int(windows.random_end(12, 0.0, tf.constant([i, 1], tf.int64))) == 12 for i in range(50)
    )
    assert int(windows.random_end(2, 1.0, tf.constant([3, 1], tf.int64))) == 2  # too few to cut


def test_date_dropout_keeps_an_ordered_random_subset_and_one_triplet():
    def kept(num, rate, i):
        return windows.kept_dates(num, rate, tf.constant([i, 11], tf.int64)).numpy()

    draws = [kept(40, 0.3, i) for i in range(300)]
    assert all(np.all(np.diff(k) > 0) and k.min() >= 0 and k.max() < 40 for k in draws)
    assert abs(np.mean([len(k) for k in draws]) / 40 - 0.7) < 0.02
    # every date is left out sometimes, none always: the subset is not a fixed pattern
    counts = np.bincount(np.concatenate(draws), minlength=40)
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 300
    assert all(len(kept(12, 0.99, i)) == windows.MIN_DATES for i in range(50))  # one triplet
    np.testing.assert_array_equal(kept(2, 0.99, 0), [0, 1])  # fewer dates than a triplet: all
    np.testing.assert_array_equal(kept(9, 0.0, 0), np.arange(9))


def test_training_date_dropout_shortens_sequences_and_scoring_has_none(tiny_records):
    from tao_keras.training import protocol

    out, _ = tiny_records
    base = datasets.PipelineConfig(
        sequence_length=None, batch_size=1, augment=False, shuffle_buffer=1, seed=3
    )

    def drawn(config, n=60):
        dataset, _ = datasets.training_dataset(str(out), config)
        return [(int(f["length"][0]), f["dt"].numpy()[0]) for f, _ in dataset.take(n)]

    whole = drawn(base)
    sparse = drawn(dataclasses.replace(base, date_dropout=0.99))
    assert max(n for n, _ in whole) > 1 and all(n == 1 for n, _ in sparse)  # 3 dates left
    # the dates kept stay in time order: every gap inside a triplet is positive
    assert all(np.all(dt[:n] > 0) for n, dt in sparse)
    half = drawn(dataclasses.replace(base, date_dropout=0.5))
    assert np.mean([n for n, _ in half]) < np.mean([n for n, _ in whole]) - 1
    scoring = protocol.evaluation_config(dataclasses.replace(base, date_dropout=0.5))
    assert scoring.date_dropout == 0.0 and not scoring.augment
    with pytest.raises(ValueError, match="date_dropout 1.0 outside"):
        dataclasses.replace(base, date_dropout=1.0)


@pytest.mark.parametrize(
    "num, stride, starts", [(7, 1, [0, 1, 2, 3, 4]), (7, 2, [0, 2, 4]), (8, 3, [0, 3]), (3, 1, [0])]
)
def test_sliding_triplets_and_time_gaps(num, stride, starts):
    images = tf.reshape(tf.range(num, dtype=tf.float32), [num, 1, 1]) * tf.ones([1, 4, 4])
    mjd = tf.constant(np.cumsum(np.arange(1, num + 1)) * 36.525, tf.float64)
    triplets, gaps = windows.sliding_triplets(images, mjd, stride)
    assert triplets.shape == (len(starts), 4, 4, 3)
    np.testing.assert_array_equal(
        triplets[:, 0, 0, :].numpy(), np.array(starts)[:, None] + np.arange(3)
    )
    # gap between dates i and i+1 is (i + 2) * 36.525 days = (i + 2) / 10 years
    np.testing.assert_allclose(
        gaps.numpy(), (np.array(starts)[:, None] + np.arange(2) + 2) / 10.0, rtol=1e-6
    )


def test_normalization_is_finite_robust_and_invariant_to_sky_and_scale():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (64, 64)).astype(np.float32)
    image[30:34, 30:34] += 200.0
    stack = np.stack(
        [
            image,
            1000.0 + 37.0 * image,
            np.full((64, 64), 5.0, np.float32),
            np.full((64, 64), np.nan, np.float32),
            image.copy(),
        ]
    )
    stack[4, ::7, :] = np.nan
    out = normalization.normalize_images(stack).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[1], out[0], atol=1e-4)  # sky level and gain do not matter
    assert (out[2] == 0).all() and (out[3] == 0).all()  # constant and all-NaN images
    assert (out[4][::7, :] == 0).all() and np.isfinite(out[4]).all()
    assert abs(np.median(out[0])) < 0.05 and 0.6 < np.std(out[0][:20, :20]) < 1.0
    assert out[0][31, 31] > 5.0  # the source stands out, compressed
    batch = normalization.normalize_images(stack[None]).numpy()[0]
    np.testing.assert_array_equal(batch, out)  # any leading shape


def _star(flux, sky, noise, rng, size=64, sigma=1.2):
    """A Gaussian star of total `flux` at the centre on a sky `sky` with Gaussian noise `noise`."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    psf = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return (sky + flux * psf / psf.sum() + rng.normal(0, noise, (size, size))).astype(np.float32)


def test_object_normalization_preserves_flux_ratio_between_dates_with_different_sky_noise():
    rng = np.random.default_rng(3)
    # dates 0-2: dark sky (noise 5); date 3: bright Moon (noise 20) while the source doubles
    images = np.stack(
        [
            _star(4000, 300, 5, rng),
            _star(4000, 310, 5, rng),
            _star(4000, 290, 5, rng),
            _star(8000, 2000, 20, rng),
        ]
    )
    scale = normalization.reference_scale(images)
    assert 4.5 < float(scale) < 5.5  # the first dates' noise, not the Moon's
    out = np.sinh(
        normalization.normalize_images(images, scale).numpy()
    )  # undo the asinh: flux units
    aperture = (slice(26, 38), slice(26, 38))
    ratio = out[3][aperture].sum() / out[0][aperture].sum()
    assert abs(ratio - 2.0) < 0.1  # the brightening survives
    per_image = np.sinh(normalization.normalize_images(images).numpy())
    wrong = per_image[3][aperture].sum() / per_image[0][aperture].sum()
    assert wrong < 0.7  # per-image scales turned it into a fading


def test_object_normalization_is_invariant_to_sky_level_and_gain_and_handles_nan():
    rng = np.random.default_rng(4)
    images = np.stack([_star(3000, 500, 6, rng) for _ in range(4)])
    images[1, 3:5, :] = np.nan
    transformed = 1000.0 + 2.5 * images  # other bias and gain
    a = normalization.normalize_images(images, normalization.reference_scale(images)).numpy()
    b = normalization.normalize_images(
        transformed, normalization.reference_scale(transformed)
    ).numpy()
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.isfinite(a).all() and (a[1, 3:5, :] == 0).all()
    # all-NaN or constant first dates are skipped when choosing the scale; none usable -> finite
    padded = np.concatenate(
        [np.full((1, 64, 64), np.nan, np.float32), np.full((1, 64, 64), 7.0, np.float32), images]
    )
    assert float(normalization.reference_scale(padded)) == float(
        normalization.reference_scale(images[:1])
    )
    flat = np.full((3, 64, 64), 7.0, np.float32)
    assert float(normalization.reference_scale(flat)) == pytest.approx(normalization.MIN_SCALE)
    assert np.isfinite(
        normalization.normalize_images(flat, normalization.reference_scale(flat)).numpy()
    ).all()
    with pytest.raises(ValueError, match="scale"):
        normalization.object_scale(images, "night")


def test_augmentation_is_one_dihedral_transform_for_the_whole_sequence():
    step = tf.random.stateless_uniform([8, 8, 3], seed=[1, 2])
    sequence = tf.stack([step] * 5)
    variants = set()
    for seed in range(40):
        out = augmentation.rotate_flip(sequence, tf.constant([seed, 3], tf.int64)).numpy()
        assert all((out[k] == out[0]).all() for k in range(5))
        variants.add(out[0].tobytes())
    group = {
        np.rot90(f, k).tobytes() for k in range(4) for f in (step.numpy(), np.fliplr(step.numpy()))
    }
    assert variants == group  # exactly the 8 transforms


def test_task_tables():
    assert classes.task_label_table("multiclass") == [0, 1, 2, 3, 4, 5]
    assert classes.task_label_table("binary") == [0, 0, 0, 0, 0, 1]
    assert classes.task_label_table("supernova") == [-1, -1, -1, -1, 0, 1]
    assert classes.task_label_table("transients") == [0, 1, 2, 3, 4, -1]
    assert classes.task_class_names("binary") == ("transient", "NT")
    with pytest.raises(ValueError, match="unknown task"):
        classes.task_class_names("galaxies")


def _records_by_id(records_dir):
    return {
        r.object_id: r
        for r in parser.read_records(sorted(glob.glob(os.path.join(records_dir, "*.tfrecord"))))
    }


def test_evaluation_sequences_mask_and_labels(tiny_records):
    out, _ = tiny_records
    config = datasets.PipelineConfig(sequence_length=None, batch_size=3)
    by_length = collections.Counter()
    seen = 0
    for features, labels in datasets.evaluation_dataset(str(out), config, split="train"):
        images, lengths, gaps = (
            features["images"].numpy(),
            features["length"].numpy(),
            features["dt"].numpy(),
        )
        assert images.shape[1] == lengths.max()
        for b, length in enumerate(lengths):
            assert np.all(images[b, length:] == 0) and np.all(gaps[b, length:] == 0)
            assert np.any(images[b, length - 1] != 0)
            by_length[int(length)] += 1
            seen += 1
        assert labels.dtype == tf.int32
    manifest = manifest_file.load(str(out))
    assert seen == sum(manifest["splits"]["train"]["records"].values())
    train_ids = {
        r.object_id
        for r in parser.read_records(
            [os.path.join(out, s["file"]) for s in manifest["splits"]["train"]["shards"]]
        )
    }
    expected = collections.Counter(_records_by_id(out)[i].num_dates - 2 for i in train_ids)
    assert by_length == expected  # length = dates - 2 triplets


def test_evaluation_uses_the_first_exposure_of_each_date(tiny_records):
    out, manifest = tiny_records
    shard = os.path.join(out, manifest["splits"]["train"]["shards"][0]["file"])
    record = next(parser.read_records([shard]))
    config = datasets.PipelineConfig(sequence_length=None, batch_size=1, task="multiclass")
    features, _ = next(iter(datasets.evaluation_dataset(str(out), config, split="train")))
    first = [np.flatnonzero(record.date_index == d)[0] for d in range(record.num_dates)]
    expected = normalization.normalize_images(
        record.images[first], normalization.reference_scale(record.images[first])
    ).numpy()
    np.testing.assert_allclose(features["images"].numpy()[0, :, :, :, 0], expected[:-2], atol=1e-6)
    np.testing.assert_allclose(features["images"].numpy()[0, -1, :, :, 2], expected[-1], atol=1e-6)


def test_first_dates_are_the_whole_sequence_cut_without_look_ahead(tiny_records):
    out, _ = tiny_records
    whole = datasets.PipelineConfig(sequence_length=None, batch_size=1, augment=False)
    first4 = dataclasses.replace(whole, max_dates=4)
    for (a, _), (b, _) in zip(
        datasets.evaluation_dataset(str(out), whole, split="train").take(4),
        datasets.evaluation_dataset(str(out), first4, split="train").take(4),
    ):
        assert int(b["length"][0]) == min(2, int(a["length"][0]))  # 4 dates = 2 triplets
        # the same pixels and gaps: the noise scale comes from the first dates in both
        np.testing.assert_array_equal(b["images"].numpy()[0], a["images"].numpy()[0, :2])
        np.testing.assert_array_equal(b["dt"].numpy()[0], a["dt"].numpy()[0, :2])


def test_training_prefixes_and_at_most_s_dates(tiny_records):
    out, _ = tiny_records
    base = datasets.PipelineConfig(
        sequence_length=None, batch_size=1, augment=False, shuffle_buffer=1, seed=3
    )
    longest = max(
        int(f["length"][0]) for f, _ in datasets.evaluation_dataset(str(out), base, split="train")
    )

    def lengths(config, n=120):
        dataset, _ = datasets.training_dataset(str(out), config)
        return np.array([int(f["length"][0]) for f, _ in dataset.take(n)])

    whole = lengths(base)
    assert whole.min() > 1 and whole.max() == longest
    cut = lengths(dataclasses.replace(base, prefix_fraction=1.0))
    assert cut.min() == 1 and cut.mean() < whole.mean() - 1  # cut after 3..D dates
    capped = lengths(dataclasses.replace(base, sequence_length=5, prefix_fraction=0.5))
    assert capped.max() == 3 and capped.min() == 1  # at most 5 dates = 3 triplets


@pytest.mark.parametrize("mode", ["sequence", "triplet"])
def test_crop_is_the_centre_of_the_normalized_cutout(tiny_records, mode):
    out, _ = tiny_records
    whole = datasets.PipelineConfig(mode=mode, sequence_length=None, batch_size=1)
    cropped = dataclasses.replace(whole, model_roi_size=32)
    for (a, _), (b, _) in zip(
        datasets.evaluation_dataset(str(out), whole, split="train").take(3),
        datasets.evaluation_dataset(str(out), cropped, split="train").take(3),
    ):
        assert b["images"].shape[-3:-1] == (32, 32)
        np.testing.assert_array_equal(
            b["images"].numpy(), a["images"].numpy()[..., 16:48, 16:48, :]
        )
    with pytest.raises(ValueError, match="cannot crop"):
        model_inputs.center_crop(tf.zeros([2, 16, 16]), 32)


def test_triplet_mode_stacks_max_and_neighbours(tiny_records):
    out, manifest = tiny_records
    config = datasets.PipelineConfig(mode="triplet", batch_size=1)
    records = {}
    for shard in manifest["splits"]["train"]["shards"]:
        records.update(
            {r.object_id: r for r in parser.read_records([os.path.join(out, shard["file"])])}
        )
    ordered = [
        r
        for label in range(6)
        for shard in manifest["splits"]["train"]["shards"]
        if shard["class"] == classes.CLASS_NAMES[label]
        for r in parser.read_records([os.path.join(out, shard["file"])])
    ]
    for (features, label), record in zip(
        datasets.evaluation_dataset(str(out), config, split="train"), ordered
    ):
        assert int(label[0]) == record.label
        first = [np.flatnonzero(record.date_index == d)[0] for d in range(record.num_dates)]
        chosen = windows.triplet_dates(
            record.num_dates, record.max_date_index, record.label == 5
        ).numpy()
        scale = normalization.reference_scale(record.images[first])  # the object's first dates
        expected = normalization.normalize_images(
            record.images[np.array(first)[chosen]], scale
        ).numpy()
        np.testing.assert_allclose(
            np.moveaxis(features["images"].numpy()[0], -1, 0), expected, atol=1e-6
        )


def _labels(dataset, batches):
    return np.concatenate([labels.numpy() for _, labels in dataset.take(batches)])


def test_balanced_epoch_has_equal_class_frequencies(tiny_records):
    out, manifest = tiny_records
    config = datasets.PipelineConfig(
        batch_size=24, sequence_length=5, augment=False, shuffle_buffer=4
    )
    dataset, steps = datasets.training_dataset(str(out), config)
    assert steps == 1  # 6 classes x 1 object each / batch 24
    labels = _labels(dataset, 60)  # 1440 sequences, 240 expected per class
    frequencies = np.bincount(labels, minlength=6) / len(labels)
    np.testing.assert_allclose(frequencies, 1 / 6, atol=0.045)  # ~4 standard deviations


def test_natural_frequencies_follow_the_counts(tiny_records):
    out, _ = tiny_records
    config = datasets.PipelineConfig(
        task="binary",
        balance="natural",
        batch_size=30,
        sequence_length=5,
        augment=False,
        shuffle_buffer=4,
    )
    dataset, steps = datasets.training_dataset(str(out), config)
    labels = _labels(dataset, 40)
    manifest = manifest_file.load(str(out))
    counts = manifest["splits"]["train"]["records"]
    expected_nt = counts["NT"] / sum(counts.values())
    assert abs(np.mean(labels == 1) - expected_nt) < 0.05
    assert steps == 1


def test_task_filters_and_relabels(tiny_records):
    out, _ = tiny_records
    config = datasets.PipelineConfig(task="supernova", batch_size=1, sequence_length=None)
    ids = []
    for features, labels in datasets.evaluation_dataset(str(out), config, split="train"):
        assert int(labels[0]) in (0, 1)
        ids.append(int(labels[0]))
    manifest = manifest_file.load(str(out))
    counts = manifest["splits"]["train"]["records"]
    assert sorted(ids) == [0] * counts.get("SN", 0) + [1] * counts.get("NT", 0)
    config = dataclasses.replace(config, task="transients")
    labels = [int(y[0]) for _, y in datasets.evaluation_dataset(str(out), config, split="train")]
    assert len(labels) == sum(counts.values()) - counts.get("NT", 0) and max(labels) <= 4


def test_same_seed_same_batches(tiny_records):
    out, _ = tiny_records

    def first_batches(seed):
        config = datasets.PipelineConfig(
            batch_size=4, sequence_length=7, deterministic=True, seed=seed
        )
        dataset, _ = datasets.training_dataset(str(out), config)
        return [(f["images"].numpy(), f["dt"].numpy(), y.numpy()) for f, y in dataset.take(3)]

    a, b, c = first_batches(5), first_batches(5), first_batches(6)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_training_sees_new_permutations_each_pass(tiny_records):
    out, _ = tiny_records
    config = datasets.PipelineConfig(
        task="supernova",
        batch_size=2,
        sequence_length=None,
        augment=False,
        deterministic=True,
        shuffle_buffer=1,
    )
    dataset, _ = datasets.training_dataset(str(out), config)
    sequences = collections.defaultdict(set)
    for features, labels in dataset.take(40):
        for b in range(2):
            length = int(features["length"][b])
            key = (int(labels[b]), length)  # the tiny split has one SN and one NT object
            sequences[key].add(features["images"].numpy()[b, :length].tobytes())
    assert all(len(v) > 5 for v in sequences.values())


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        datasets.PipelineConfig(mode="video")
    with pytest.raises(ValueError, match="sequence_length 2 < 3"):
        datasets.PipelineConfig(sequence_length=2)


def test_cached_training_stream_gives_the_same_kind_of_batches(tiny_records):
    out, _ = tiny_records
    config = datasets.PipelineConfig(
        batch_size=4, sequence_length=5, cache=True, deterministic=True
    )
    dataset, _ = datasets.training_dataset(str(out), config)
    features, labels = next(iter(dataset))
    assert features["images"].shape == (4, 3, 64, 64, 3) and labels.shape == (4,)


def test_date_grouping_agrees_between_converter_numpy_and_serving_tensorflow():

    rng = np.random.default_rng(11)
    day = 0.5  # schema.SAME_DATE_DAYS
    cases = [
        np.array([55000.0]),
        np.array([55000.0, 55000.0, 55000.0]),  # identical times
        np.array([55000.0, 55000.0 + day]),  # exactly the threshold: a new date
        np.array([55000.0, 55000.0 + day - 1e-9]),  # just under: the same date
        np.array([55000.0 + k * day for k in range(6)]),  # a chain of threshold gaps
    ]
    for _ in range(200):
        n = int(rng.integers(1, 60))
        gaps = rng.choice(
            [rng.uniform(0, 0.02), rng.uniform(0.3, 0.7), rng.uniform(1, 90)], size=n - 1
        )
        cases.append(
            np.concatenate(
                [[rng.uniform(53000, 56000)], rng.uniform(0.9, 1.1, n - 1) * gaps]
            ).cumsum()
        )
    for mjd in cases:
        expected = request_cleanup.date_index_numpy(mjd)
        got = request_cleanup.group_dates(tf.constant(mjd, tf.float64)).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=str(mjd))


def test_coadd_averages_each_dates_exposures_and_training_subsets_are_never_empty():
    rng = np.random.default_rng(5)
    date_index = np.array([0, 0, 0, 0, 1, 2, 2], np.int64)
    images = rng.normal(size=(7, 4, 4)).astype(np.float32)
    images[1, 0, 0] = np.nan  # a bad pixel: averaged over the other exposures only
    mjd = np.array([1.0, 1.01, 1.02, 1.03, 5.0, 9.0, 9.02])
    out, times = dates.coadd_dates(images, mjd, date_index, 3)
    np.testing.assert_allclose(out[1].numpy(), images[4])
    np.testing.assert_allclose(out[2].numpy(), images[5:7].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 0].numpy(), images[[0, 2, 3], 0, 0].mean(), rtol=1e-6)
    np.testing.assert_allclose(out[0, 1:, :].numpy(), images[:4, 1:, :].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(times.numpy(), [1.015, 5.0, 9.01])
    subsets = set()
    for s in range(60):
        part, t = dates.coadd_dates(images, mjd, date_index, 3, seed=[s, 3])
        assert np.isfinite(part.numpy()[1:]).all() and np.isfinite(t.numpy()).all()  # never empty
        # each date's mean is the mean of some non-empty subset of its exposures
        used = [
            k
            for k in range(1, 16)
            if np.allclose(
                part[0, 1:].numpy(),
                images[[i for i in range(4) if k >> i & 1], 1:].mean(axis=0),
                atol=1e-5,
            )
        ]
        assert len(used) == 1
        subsets.add(used[0])
    assert len(subsets) > 5  # many distinct training sequences per object
