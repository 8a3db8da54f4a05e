"""Model presets: `paper` (the paper's best TAO-Net, pixels only) and `cpu` (trains in minutes
on 2 cores, with the per-date photometry, its whole-sequence statistics and a classifier of
those statistics fused with the GRU's)."""

from tao_keras.models.densenet import DenseNetConfig
from tao_keras.models.taonet import TAONetConfig

PRESETS = {
    # k=32, L=70 DenseNet-BC (3.0M parameters), GRU 2 x 128, masked sum over time.
    "paper": TAONetConfig(
        backbone=DenseNetConfig(growth_rate=32, depth=70),
        gru_layers=2,
        gru_units=128,
        aggregation="add",
    ),
    # k=12, L=28, stem stride 2, one GRU of 64 units, on the central 16x16 pixels (40": the
    # object, its host and little else; paper Table 10 found small losses from smaller RoIs on
    # real data, here they scored higher, as the global pooling then mixes fewer neighbours
    # with the object: docs/science.md), a masked mean over time (the output's scale does
    # not grow with the number of dates), and the per-date forced photometry with its
    # whole-sequence statistics beside the GRU (+3.1 [+0.8, +5.2] test mean max-F1 over pixels
    # only at 150 objects per class, 3 surveys x 3 trainings: docs/science.md), and a second
    # classifier on those statistics alone, five small networks fitted apart and frozen,
    # whose probabilities are averaged with the GRU's (TAO-Net joint +4.7 [+2.8, +7.3] over
    # the light-curve forest at 150 objects per class, +1.8 [+0.4, +3.5] over the same
    # expert trained inside the stages, above the forest after every number of nights:
    # docs/science.md).
    "cpu": TAONetConfig(
        backbone=DenseNetConfig(growth_rate=12, depth=28, stem_stride=2, roi_size=16),
        gru_layers=1,
        gru_units=64,
        aggregation="mean",
        photometry=True,
        photometry_statistics=True,
        statistics_expert=True,
        expert_members=5,
    ),
}


def preset(name):
    """The TAONetConfig of a preset name ('paper' or 'cpu'); ValueError naming the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
