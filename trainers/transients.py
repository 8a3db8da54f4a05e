"""Train TAO-Net on the 'transients' task (see trainers.common for the flags).

python -m trainers.transients [--data DIR] [--preset cpu|paper] [--init_from RUN_DIR]
"""

from absl import app

from trainers import common


def main(argv):
    del argv
    common.run("transients")


if __name__ == "__main__":
    app.run(main)
