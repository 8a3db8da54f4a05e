"""Training settings: one small dataclass per stage, presets `cpu` and `paper`."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One stage's schedule. average_epochs > 0: the stage scores, keeps and exports an
    exponential moving average of its trainable weights over about this many epochs instead
    of the raw weights of its best epoch (ema_momentum; science.md); a stage's own setting, so
    averaging only the joint stage leaves a kept run's stages 1 and 2 reusable."""

    epochs: int
    learning_rate: float
    batch_size: int
    average_epochs: float = 0.0

    def __post_init__(self):
        if not self.average_epochs >= 0.0:
            raise ValueError(f"average_epochs {self.average_epochs}: 0 (off) or more")


@dataclasses.dataclass(frozen=True)
class Stage:
    """What sets one stage of the protocol apart: the code asks these, not the stage's name."""

    name: str
    on_sequences: bool  # TAO-Net on sequences of dates (False: the DenseNet on triplets)
    window_of_s_dates: bool  # training sequences cut to the most recent S dates
    trains_backbone: bool  # the DenseNet's weights are trained (unless config.frozen says not)
    auxiliary_loss: bool  # the per-step head's loss counts (weight TrainConfig.aux_weight)
    # the final output learns the forest's soft targets (weight TrainConfig.teacher_weight)
    teacher: bool = False


STAGES = {
    "densenet": Stage("densenet", False, False, True, False),
    "gru": Stage("gru", True, False, False, False),
    "joint": Stage("joint", True, True, True, True, teacher=True),
}


def stage(name):
    """The Stage of a name in STAGES; ValueError naming the choices."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")
    return STAGES[name]


SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.01  # the cosine schedule's last rate, as a fraction of the stage's rate


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Stage 1: DenseNet on triplets; 2: GRU on frozen backbone, whole sequences; 3: joint
    training on at most S dates (the most recent of the window) with the auxiliary loss
    (weight aux_weight). prefix_fraction: in stages 2 and 3, the share of training sequences
    cut after a random date (an object as it looked after that night, for early
    classification); evaluation and serving use whole sequences (or their first N dates)."""

    model_preset: str = "cpu"
    task: str = "multiclass"
    densenet: StageConfig = StageConfig(epochs=8, learning_rate=2e-3, batch_size=32)
    gru: StageConfig = StageConfig(epochs=3, learning_rate=2e-3, batch_size=16)
    joint: StageConfig = StageConfig(epochs=2, learning_rate=5e-4, batch_size=16)
    sequence_length: int | None = 19  # S of the joint stage; None: every date
    prefix_fraction: float = 0.0
    # stages 2 and 3: each training date left out with this probability (augmentation: another
    # cadence of the same object; science.md)
    date_dropout: float = 0.0
    aux_weight: float = 1.0
    weight_decay: float = 1e-4
    # > 0: the joint stage's final output learns (1 - w) x one-hot + w x the light-curve
    # forest's out-of-fold probabilities of the object (lightcurves.teacher; science.md)
    teacher_weight: float = 0.0
    # the learning rate over a stage: "constant", or "cosine" (from the stage's rate down to
    # COSINE_FLOOR of it at the stage's last step, half a cosine; science.md)
    learning_rate_schedule: str = "constant"
    epoch_fraction: float = 1.0  # fraction of the balanced epoch per Keras epoch (quick runs)
    frozen: tuple = ()  # parts kept fixed in TAO-Net stages: "backbone", "recurrent"
    precision: str = "float32"  # Keras dtype policy of the models: float32 or mixed_bfloat16
    per_date: str = "choose"  # one image per date: an exposure (the paper) or their "coadd"
    normalization: str = "object"  # pixel noise scale per object (first dates) or per "image"
    aggregation: str | None = None  # TAO-Net output over time: None = the model preset's
    model_roi_size: int | None = None  # central crop of the records' RoI: None = the preset's
    photometry: bool | None = None  # the per-date forced photometry input: None = the preset's
    # its whole-sequence statistics before the classifier (TAONetConfig): None = the preset's
    photometry_statistics: bool | None = None
    # the von Neumann ratio among those statistics (TAONetConfig.photometry_eta): None = preset's
    photometry_eta: bool | None = None
    # training drops an object's whole GRU output with this probability (TAONetConfig): None =
    # the preset's
    modality_dropout: float | None = None
    # a classifier on the photometry statistics alone, fused with the GRU's
    # (TAONetConfig.statistics_expert): None = the preset's
    statistics_expert: bool | None = None
    # its members (TAONetConfig.expert_members): None = the preset's
    expert_members: int | None = None
    # with the statistics expert: the share of the GRU classifier's loss taken on the served
    # mean of it and the frozen expert instead of on its own output (0: it learns alone; 1: it
    # learns what the expert's probabilities leave, objects the expert gets right weigh less;
    # science.md)
    fused_loss: float = 0.0
    # the recurrent head (TAO-Net's GRU stack): None = the preset's (cpu 1 x 64, paper 2 x 128)
    gru_layers: int | None = None
    gru_units: int | None = None
    max_minutes: float | None = (
        None  # wall-clock budget of the whole run (protocol.BUDGET_SHARE splits it per stage)
    )
    seed: int = 0
    # same seed, same machine -> same numbers (ordered tf.data; the trainer also turns on
    # TensorFlow's op determinism)
    deterministic: bool = True

    def __post_init__(self):
        unknown = set(self.frozen) - {"backbone", "recurrent"}
        if unknown:
            raise ValueError(
                f"frozen parts {sorted(unknown)} unknown; choose from backbone, recurrent"
            )
        if self.learning_rate_schedule not in SCHEDULES:
            raise ValueError(
                f"learning_rate_schedule {self.learning_rate_schedule!r}: choose from "
                f"{', '.join(SCHEDULES)}"
            )
        if not 0.0 <= self.date_dropout < 1.0:
            raise ValueError(f"date_dropout {self.date_dropout}: in [0, 1) (0: off)")
        if not 0.0 <= self.fused_loss <= 1.0:
            raise ValueError(f"fused_loss {self.fused_loss}: in [0, 1] (0: off)")
        if not 0.0 <= self.teacher_weight < 1.0:
            raise ValueError(f"teacher_weight {self.teacher_weight}: in [0, 1) (0: off)")
        if self.photometry is False and self.photometry_statistics:
            raise ValueError(
                "photometry_statistics are statistics of the photometry input: they need "
                "photometry on (drop --nophotometry, or add --nophotometry_statistics)"
            )
        if self.photometry_eta and (
            self.photometry is False or self.photometry_statistics is False
        ):
            raise ValueError(
                "photometry_eta is one of the photometry statistics: it needs photometry and "
                "photometry_statistics on (drop --nophotometry / --nophotometry_statistics, or "
                "add --nophotometry_eta)"
            )
        if self.statistics_expert and (
            self.photometry is False or self.photometry_statistics is False
        ):
            raise ValueError(
                "statistics_expert classifies from the photometry statistics: it needs photometry "
                "and photometry_statistics on (drop --nophotometry / --nophotometry_statistics, "
                "or add --nostatistics_expert)"
            )
        for name in ("gru_layers", "gru_units", "expert_members"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} {value}: 1 or more (None: the preset's)")
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ValueError(f"precision {self.precision!r}: float32 or mixed_bfloat16")


TRAINING_PRESETS = {
    # the winners of the learning-curve benchmark (docs/science.md): co-added dates, 40/15/40
    # epochs, half the TAO-Net training sequences cut after a random night (early classification),
    # the joint stage on every date of each (cut) sequence rather than the paper's S = 19 most
    # recent: the whole-sequence photometry statistics are then trained on what they are scored
    # and served on (+1.0 [-0.4, +2.6] test mean max-F1 at 150 per class, 3 surveys, and a
    # shorter training); the joint stage scores, keeps and exports the moving average of its
    # weights over ~4 epochs (TAO-Net joint +4.8 [+2.6, +7.2] above the forest, 3 surveys x 2
    # trainings; +1.3 [+0.7, +2.6] over the raw best epoch with one training per survey)
    "cpu": TrainConfig(
        per_date="coadd",
        densenet=StageConfig(epochs=40, learning_rate=2e-3, batch_size=32),
        gru=StageConfig(epochs=15, learning_rate=2e-3, batch_size=16),
        joint=StageConfig(epochs=40, learning_rate=5e-4, batch_size=16, average_epochs=4.0),
        prefix_fraction=0.5,
        sequence_length=None,
    ),
    # the paper's protocol: one exposure per date, its schedule (normalization: per object in
    # every preset, the fix of docs/science.md)
    "paper": TrainConfig(
        model_preset="paper",
        per_date="choose",
        densenet=StageConfig(epochs=60, learning_rate=1e-3, batch_size=64),
        gru=StageConfig(epochs=30, learning_rate=1e-3, batch_size=32),
        joint=StageConfig(epochs=20, learning_rate=1e-4, batch_size=8),
    ),
}


def ema_momentum(average_epochs, steps_per_epoch):
    """The per-step momentum of a moving average over about `average_epochs` epochs of
    `steps_per_epoch` steps (1 - 1 / steps averaged); 0.0 (no average) when that is a step or
    less. A horizon in epochs means the same on 500 objects and on the full release."""
    steps = average_epochs * steps_per_epoch
    return 1.0 - 1.0 / steps if steps > 1.0 else 0.0


def decay_steps(config, stage_config, steps_per_epoch):
    """The steps over which a stage's learning rate decays (its epochs x steps_per_epoch) when
    config.learning_rate_schedule is "cosine", else 0 (a constant rate)."""
    if config.learning_rate_schedule == "cosine":
        return stage_config.epochs * steps_per_epoch
    return 0


def from_dict(values):
    """A TrainConfig from its dataclasses.asdict form (a run's config.json; keys that are not
    fields, e.g. "records", are ignored; missing ones take the defaults). A config written when
    the weight average was one run-wide "average_epochs" gives it to every stage."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kept = {k: v for k, v in values.items() if k in names}
    run_wide_average = values.get("average_epochs")
    for name in STAGES:
        if isinstance(kept.get(name), dict):
            stage_values = dict(kept[name])
            if run_wide_average is not None:
                stage_values.setdefault("average_epochs", run_wide_average)
            kept[name] = StageConfig(**stage_values)
    if isinstance(kept.get("frozen"), list):
        kept["frozen"] = tuple(kept["frozen"])
    return TrainConfig(**kept)
