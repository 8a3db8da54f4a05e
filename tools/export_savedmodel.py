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


def main(argv):
    del argv
    from tao_keras import export

    try:
        target = export.export_run(FLAGS.run, FLAGS.output, FLAGS.name, FLAGS.version, FLAGS.stage)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"SavedModel written to {target}")
    print(f"inspect: saved_model_cli show --dir {target} --all")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
