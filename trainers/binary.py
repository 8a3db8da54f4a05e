"""Train TAO-Net on the 'binary' task (see trainers.common for the flags).

python -m trainers.binary [--data DIR] [--preset cpu|paper] [--init_from RUN_DIR]
"""

from absl import flags

from trainers import common

flags.adopt_module_key_flags(common)  # --help lists the trainers' flags


def main(argv):
    del argv
    common.run("binary")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
