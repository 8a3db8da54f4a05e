"""The model contract: everything a trained TAO-Net expects of its input, in one typed value.

A model is only as good as the agreement between the pixels it was trained on and the pixels
it is served. That agreement is one frozen dataclass, `ModelContract`: the records' cutout
side and the model's central crop of it, the bands, how one image per date is made, the pixel
normalization, the triplet stride, the minimum number of dates, how many dates the served
model sees, the task's classes, and the architecture (`TAONetConfig`: the DenseNet and the
temporal head: GRU layers, width, direction, aggregation over time, date gaps, the per-date
photometry input).

The trainer builds it once (tao_keras.training.protocol.model_contract) and saves it beside
every stage's model.keras; the export writes it into the SavedModel's metadata, and
`tao_keras.load` reads it back as this type. The input pipeline, the model builder, the
protocol, the export, the serving module and the night-by-night update all take it instead
of separate arguments, so a new input (a second band, a photometry channel) is one field
here and one reader per layer (docs/architecture.md).

This module needs Keras (the architecture's dataclasses) but not TensorFlow.
"""

import dataclasses

import keras

from tao_keras import classes, files
from tao_keras.lightcurves import photometry
from tao_keras.models import densenet, taonet
from tfrecords import schema

VERSION = 1
PER_DATE = ("choose", "coadd")  # one exposure per date (the paper), or the date's co-add
NORMALIZATIONS = ("object", "image")  # one noise scale per object (first dates), or per image
BANDS = 1  # Catalina's unfiltered images; more bands would widen the triplet channels


class ContractError(ValueError):
    """A contract that cannot be read, or a model that does not match its contract."""


@dataclasses.dataclass(frozen=True)
class ModelContract:
    """What a TAO-Net takes and how it is built (see the module docstring).

    roi_size: side of the cutouts in the records and in a request (pixels); the model reads
    the central architecture.backbone.roi_size pixels of them (model_roi_size).
    sequence_length: the served model sees the most recent S dates of a request (None: all
    of them, how the trainers score and export every stage); not the joint stage's training
    window, which is a training setting (TrainConfig.sequence_length).
    """

    architecture: taonet.TAONetConfig
    roi_size: int
    task: str = "multiclass"
    bands: int = BANDS
    per_date: str = "choose"
    normalization: str = "object"
    stride: int = 1
    min_dates: int = schema.MIN_OBSERVATION_DATES
    sequence_length: int | None = None

    def __post_init__(self):
        problems = []
        if self.per_date not in PER_DATE:
            problems.append(f"per_date {self.per_date!r} not in {PER_DATE}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"normalization {self.normalization!r} not in {NORMALIZATIONS}")
        if self.bands != BANDS:
            problems.append(f"bands {self.bands}: only {BANDS} band is implemented")
        if self.min_dates != schema.MIN_OBSERVATION_DATES:
            problems.append(
                f"min_dates {self.min_dates}: a triplet needs {schema.MIN_OBSERVATION_DATES}"
            )
        if self.roi_size < self.model_roi_size:
            problems.append(
                f"roi_size {self.roi_size} smaller than the model's {self.model_roi_size}"
            )
        minimum = photometry.PhotometryConfig().minimum_roi
        if self.architecture.photometry and self.roi_size < minimum:
            problems.append(
                f"roi_size {self.roi_size}: the photometry input's background annulus needs "
                f"cutouts of at least {minimum} pixels"
            )
        if self.stride < 1:
            problems.append(f"stride {self.stride} < 1")
        if self.sequence_length is not None and self.sequence_length < self.min_dates:
            problems.append(f"sequence_length {self.sequence_length} < {self.min_dates}")
        if self.task not in classes.TASKS:
            problems.append(f"task {self.task!r} not in {tuple(classes.TASKS)}")
        if problems:
            raise ContractError("model contract: " + "; ".join(problems))

    @property
    def model_roi_size(self):
        """Side of the central crop the model reads (the DenseNet's input), pixels."""
        return self.architecture.backbone.roi_size

    @property
    def class_names(self):
        """The task's class names, in the order of the model's outputs."""
        return tuple(classes.task_class_names(self.task))


def to_dict(contract):
    """The contract as plain JSON values, with the format's version."""
    return {"version": VERSION, **dataclasses.asdict(contract)}


def from_dict(values, source="model contract"):
    """A ModelContract from to_dict's form; ContractError naming `source` and the field for an
    unknown field, a wrong type, a newer version or an invalid value (a field missing from an
    older file takes its default)."""
    if not isinstance(values, dict):
        raise ContractError(f"{source}: not a JSON object")
    values = dict(values)
    version = values.pop("version", None)
    if version != VERSION:
        raise ContractError(f"{source}: version {version!r}, this code reads {VERSION}")
    try:
        architecture = dict(values.pop("architecture"))
        architecture["backbone"] = _dataclass(
            densenet.DenseNetConfig, architecture.get("backbone", {}), f"{source}: backbone"
        )
        values["architecture"] = _dataclass(
            taonet.TAONetConfig, architecture, f"{source}: architecture"
        )
        return _dataclass(ModelContract, values, source)
    except KeyError as e:
        raise ContractError(f"{source}: field {e} missing") from None
    except ContractError as e:
        if str(e).startswith(source):
            raise
        raise ContractError(f"{source}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ContractError(f"{source}: {e}") from None


def _dataclass(kind, values, source):
    """kind(**values) with unknown fields named in a ContractError."""
    if not isinstance(values, dict):
        raise ContractError(f"{source}: not a JSON object")
    unknown = set(values) - {f.name for f in dataclasses.fields(kind)}
    if unknown:
        raise ContractError(f"{source}: unknown field(s) {sorted(unknown)}")
    return kind(**values)


def save(contract, path):
    """Write the contract to `path` as JSON, atomically."""
    files.write_json_atomic(path, to_dict(contract))


def load(path):
    """The ModelContract saved at `path`; FileNotFoundError when missing, ContractError naming
    the file and the field when it is not a whole, valid contract."""
    return from_dict(files.read_json(path, "a model contract"), str(path))


def check_model(contract, model):
    """ContractError listing every way a built TAO-Net (or DenseNet on triplets) differs from
    the contract: input RoI, number of classes, and for TAO-Net the GRU layers, direction,
    aggregation over time, date gaps, photometry input and statistics (read from the layers'
    types and the inputs, never the layers' names)."""
    problems = []
    images = model.input["images"] if isinstance(model.input, dict) else model.input
    if int(images.shape[-2]) != contract.model_roi_size:
        problems.append(f"input RoI {images.shape[-2]}, contract {contract.model_roi_size}")
    output = model.output["probabilities"] if isinstance(model.output, dict) else model.output
    if int(output.shape[-1]) != len(contract.class_names):
        problems.append(
            f"{output.shape[-1]} classes, task {contract.task} has {len(contract.class_names)}"
        )
    if isinstance(model.input, dict) and "length" in model.input:  # TAO-Net, not the DenseNet
        head = contract.architecture
        recurrent = taonet.recurrent_layers(model)
        if len(recurrent) != head.gru_layers:
            problems.append(f"{len(recurrent)} GRU layers, contract {head.gru_layers}")
        bidirectional = [isinstance(layer, keras.layers.Bidirectional) for layer in recurrent]
        if any(b != head.bidirectional for b in bidirectional):
            problems.append(f"bidirectional GRUs {bidirectional}, contract {head.bidirectional}")
        units = [taonet.recurrent_units(layer) for layer in recurrent]
        if any(u != head.gru_units for u in units):
            problems.append(f"GRU widths {units}, contract {head.gru_units}")
        if taonet.aggregation_of(model) != head.aggregation:
            problems.append(
                f"aggregation {taonet.aggregation_of(model)}, contract {head.aggregation}"
            )
        if taonet.uses_dt(model) != head.use_dt:
            problems.append(f"date gaps used: {taonet.uses_dt(model)}, contract {head.use_dt}")
        if taonet.uses_photometry(model) != head.photometry:
            problems.append(
                f"photometry input: {taonet.uses_photometry(model)}, contract {head.photometry}"
            )
        if taonet.uses_photometry_statistics(model) != head.photometry_statistics:
            problems.append(
                f"photometry statistics: {taonet.uses_photometry_statistics(model)}, contract "
                f"{head.photometry_statistics}"
            )
        if taonet.uses_photometry_eta(model) != head.photometry_eta:
            problems.append(
                f"von Neumann ratio among the photometry statistics: "
                f"{taonet.uses_photometry_eta(model)}, contract {head.photometry_eta}"
            )
        if taonet.uses_statistics_expert(model) != head.statistics_expert:
            problems.append(
                f"statistics expert: {taonet.uses_statistics_expert(model)}, contract "
                f"{head.statistics_expert}"
            )
        members = len(taonet.expert_layers(model))
        if head.statistics_expert and members != head.expert_members:
            problems.append(f"{members} statistics expert members, contract {head.expert_members}")
    if problems:
        raise ContractError(
            f"model {model.name!r} does not match its contract: " + "; ".join(problems)
        )
