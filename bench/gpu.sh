#!/usr/bin/env bash
# The GPU figures of the closing notes, in one go on a lent CUDA machine (about 9 minutes):
# training throughput (with the 3x1024 model's share of the bf16 rate) and the 180-second
# time-to-quality run that charrnn's time budget plans for itself. Needs ../shared/corpora.
#     bash bench/gpu.sh OUT_DIR
set -u
out=${1:-.}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, huggingface_hub; print('torch', torch.__version__, 'huggingface_hub', huggingface_hub.__version__)"
timeout 170 python3 bench/train_speed.py 2>&1 | tee "$out/train_speed.txt"
timeout 240 python3 bench/time_to_quality.py --only charrnn --budgets 180 2>&1 | tee "$out/time_to_quality.txt"
