"""Export a trainer's run as a self-contained SavedModel in the TF Serving layout.

  python -m tools.export_savedmodel --run runs/multiclass --output exported
  # -> exported/taonet_multiclass/<version>/ ; serve with
  # tensorflow_model_server --model_base_path=$PWD/exported/taonet_multiclass
  # --model_name=taonet_multiclass

Signatures and the checks done in the graph: tao_keras/export.py and the README.
"""

import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "run", None, "Run directory written by a trainer (config.json, joint/ or gru/).", required=True
)
flags.DEFINE_alias("model", "run")  # the vocabulary of the other commands: --model is a run too
flags.DEFINE_string(
    "output", None, "Export root; the model goes to OUTPUT/<name>/<version>/.", required=True
)
flags.DEFINE_string("name", None, "Model name (default: taonet_<task>).")
flags.DEFINE_integer(
    "version", None, "Version number (default: one above the highest present).", lower_bound=1
)
flags.DEFINE_enum(
    "stage", None, ["joint", "gru"], "Stage whose model to export (default: joint, else gru)."
)
flags.DEFINE_bool(
    "onnx",
    False,
    "Also write the night-by-night update for onnxruntime into <version>/onnx/ (needs "
    "the onnx package; pip install -e '.[onnx]').",
)
flags.DEFINE_bool(
    "verify",
    False,
    "With --onnx: replay up to 16 recorded objects of the run's test split night by night "
    "through both runtimes and fail unless probabilities agree to 1e-4 and classes are equal.",
)


def main(argv):
    del argv
    from tao_keras import export, run_layout

    if FLAGS.verify and not FLAGS.onnx:
        sys.exit("error: --verify compares the ONNX export with the SavedModel: add --onnx")
    try:
        target = export.export_run(
            FLAGS.run, FLAGS.output, FLAGS.name, FLAGS.version, FLAGS.stage, FLAGS.onnx
        )
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        sys.exit(f"error: {e}")
    print(f"SavedModel written to {target}")
    if FLAGS.onnx:
        print(f"ONNX update written to {target}/onnx")
    if FLAGS.verify:
        from tao_keras import onnx_export

        records = run_layout.load_config(FLAGS.run, "--run")["records"]
        try:
            result = onnx_export.verify(target, onnx_export.recorded_objects(records))
        except onnx_export.VerificationError as e:
            sys.exit(f"error: {e}")
        print(
            f"verified: {result['objects']} objects, {result['nights']} nights: probabilities "
            f"within {result['max_probability_difference']:.1e}, classes identical"
        )
    print(f"inspect: saved_model_cli show --dir {target} --all")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
