"""Train TAO-Net on the 'supernova' task (see trainers.common for the flags).

python -m trainers.supernova [--data DIR] [--preset cpu|paper] [--init_from RUN_DIR]
"""

from absl import app

from trainers import common


def main(argv):
    del argv
    common.run("supernova")


if __name__ == "__main__":
    app.run(main)
