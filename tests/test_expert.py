"""The statistics expert fitted apart (tao_keras.training.expert): what it is fitted on."""

import keras
import numpy as np

from tao_keras.models import layers as tao_layers
from tao_keras.models import taonet
from tao_keras.pipeline import datasets
from tao_keras.training import config, expert, protocol


def test_the_expert_is_fitted_on_every_training_object_whole_and_cut_short(tiny_records):
    """training_statistics gives one row per training object and scoring config (here whole
    sequences, then the first 3 nights), each the model's own statistics layer's, with the
    object's label; the rows of 3 nights count fewer dates wherever an object has more."""
    records, manifest = tiny_records
    train_config = config.TRAINING_PRESETS["cpu"]
    contract = protocol.model_contract(train_config, manifest["roi_size"])
    model = protocol.build_model("gru", train_config, contract, None)
    pipeline = protocol.pipeline_config(train_config, "gru", contract)
    whole, first_three = (protocol.evaluation_config(pipeline, n) for n in (None, 3))
    rows, labels = expert.training_statistics(model, records, [whole, first_three])
    objects = len(datasets.evaluation_object_ids(records, whole, "train"))
    assert objects > 0
    assert rows.shape == (2 * objects, len(tao_layers.statistic_names(eta=True)))
    assert rows.dtype == np.float32 and np.isfinite(rows).all()
    np.testing.assert_array_equal(labels[:objects], labels[objects:])
    statistics_of = keras.Model(model.input, model.get_layer(taonet.EXPERT_STATISTICS).output)
    expected, expected_labels = [], []
    for features, label in datasets.evaluation_dataset(records, whole, "train"):
        expected.append(np.asarray(statistics_of(features)))
        expected_labels.append(np.asarray(label))
    np.testing.assert_allclose(rows[:objects], np.concatenate(expected), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels[:objects], np.concatenate(expected_labels))
    count = tao_layers.statistic_names(eta=True).index("log_count")
    assert np.all(rows[objects:, count] <= rows[:objects, count] + 1e-6)
    assert np.any(rows[objects:, count] < rows[:objects, count] - 0.1)
