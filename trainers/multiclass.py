"""Train TAO-Net on the 'multiclass' task (see trainers.common for the flags).

  python -m trainers.multiclass [--data DIR] [--preset cpu|paper]

With no --data it simulates a small survey (cached), converts it and runs the whole protocol.
"""

from absl import app

from trainers import common


def main(argv):
    del argv
    common.run("multiclass")


if __name__ == "__main__":
    app.run(main)
