"""Fine-tune a GPT-2 style model to classify text; all settings come from a YAML recipe.

accelerate launch --config_file accelerate_config.yaml train.py --config configs/lora.yaml [key=value ...]
python train.py --config configs/smoke.yaml output.dir=runs/smoke
"""

import sys

from pipeline.cli import train_script
from pipeline.commands.process_exit import finish

if __name__ == "__main__":
    finish(train_script(sys.argv[1:]))  # exits without the ~1.5 s interpreter teardown once all is written
