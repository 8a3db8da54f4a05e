"""Train TAO-Net on the 'multiclass' task (see trainers.common for the flags).

  python -m trainers.multiclass [--data DIR] [--preset cpu|paper]

With no --data it simulates a small survey (cached), converts it and runs the whole protocol.
"""

from absl import flags

from trainers import common

flags.adopt_module_key_flags(common)  # --help lists the trainers' flags


def main(argv):
    del argv
    common.run("multiclass")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
