"""Train TAO-Net on the 'binary' task (see trainers.common for the flags).

python -m trainers.binary [--data DIR] [--preset cpu|paper] [--init_from RUN_DIR]
"""

from absl import app

from trainers import common


def main(argv):
    del argv
    common.run("binary")


if __name__ == "__main__":
    app.run(main)
