"""Console scripts (setup.cfg's console_scripts) for the project's absl programs."""

import sys

from absl import app, flags


def run(main, module_name):
    """app.run(main), with `--help` listing the flags of module_name (a command's module) as a
    `python -m` run would: under a console script the main module is the script's wrapper,
    which defines no flag."""
    module = sys.modules[module_name]
    for flag in flags.FLAGS.get_key_flags_for_module(module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main)
