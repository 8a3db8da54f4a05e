"""Print parameter counts: the paper's DenseNet grid (k x L) and the TAO-Net presets.

python -m tools.model_summary
"""

from absl import app, flags

from tao_keras import classes
from tao_keras.models import densenet, presets, taonet

FLAGS = flags.FLAGS
flags.DEFINE_list("growth_rates", ["16", "32", "64"], "Growth rates k of the grid.")
flags.DEFINE_list("depths", ["50", "70", "90"], "Depths L of the grid.")


def main(argv):
    del argv
    depths = [int(d) for d in FLAGS.depths]
    num_classes = len(classes.CLASS_NAMES)
    print("DenseNet-BC early fusion, 6-class classifier, parameters:")
    print("| k \\ L | " + " | ".join(str(d) for d in depths) + " |")
    print("|---|" + "---|" * len(depths))
    for k in (int(g) for g in FLAGS.growth_rates):
        counts = [
            densenet.build_densenet(
                densenet.DenseNetConfig(growth_rate=k, depth=d), num_classes
            ).count_params()
            for d in depths
        ]
        print(f"| {k} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    print("\nTAO-Net presets (6 classes):")
    for name, config in presets.PRESETS.items():
        model = taonet.build_taonet(config, num_classes)
        print(
            f"- {name}: {model.count_params():,} parameters "
            f"(DenseNet backbone {taonet.backbone_of(model).count_params():,})"
        )


if __name__ == "__main__":
    app.run(main)
