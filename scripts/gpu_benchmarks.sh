#!/usr/bin/env bash
# The GPU figures of the README's benchmark section, in one command on a CUDA machine:
#
#   bash scripts/gpu_benchmarks.sh [LOG_DIR [NAME...]]   # logs: outputs/gpu_benchmarks/<time>
#   bash scripts/gpu_benchmarks.sh --print               # the commands it runs, one a line
#
# NAME picks commands by name (all by default): sweep, cifar10_fast, cifar10_fast_compiled,
# default_run, default_run_bar; e.g. the sweep in one call and the runs in another.
#
# 1. the throughput sweep over resnet18, vgg16_bn and resnet20 at batch 512: b/c, b/a, b/l;
# 2. the epoch time of experiment=cifar10_fast (Page's ResNet-9, batch 512), without and with
#    torch.compile, on the built-in shapes at CIFAR-10's size (50,000 training and 10,000
#    validation images of 32x32: an epoch costs what CIFAR-10's does, with no download);
# 3. the default run's epoch time, without and with the progress bar drawing (on a
#    pseudo-terminal), which shows what the bar's drawing thread costs the training loop.
#
# Each command has its own time limit (GPU_BENCHMARK_TIMEOUT seconds, 300) and log; a failed
# one is reported and the others still run. The last lines are the figures: the sweep's
# table and ratios, and each run's epoch lines (seconds and images/s an epoch). PYTHON picks
# the interpreter (python).
set -uo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python}
# Wide enough for the sweep's table in a log file (rich draws 80 columns off a terminal).
export COLUMNS=${COLUMNS:-250}
limit=${GPU_BENCHMARK_TIMEOUT:-300}
cifar_size="data=shapes data.source.num_train=50000 data.source.num_val=10000"
runs="trainer.max_epochs=3 test=false logger=csv"
# cifar10_fast has no callbacks: the epoch lines are added.
epoch_log="+callbacks.epoch_log._target_=convnet.callbacks.epoch_log.EpochLog"

# name | command (a scripts/ command and its arguments; "tty " first: on a pseudo-terminal)
read -r -d '' COMMANDS <<EOF
sweep|python scripts/benchmark.py --sweep --models=resnet18,vgg16_bn,resnet20 --batch-sizes=512 --repeats=3 --arms=a,b,l,c
cifar10_fast|python scripts/train.py experiment=cifar10_fast $cifar_size $runs $epoch_log
cifar10_fast_compiled|python scripts/train.py experiment=cifar10_fast $cifar_size $runs $epoch_log compile=true
default_run|python scripts/train.py $runs
default_run_bar|tty python scripts/train.py $runs
EOF

if [[ ${1:-} == --print ]]; then
    while IFS='|' read -r _ command; do echo "${command#tty }"; done <<<"$COMMANDS"
    exit 0
fi

log_dir=${1:-outputs/gpu_benchmarks/$(date +%Y-%m-%d_%H-%M-%S)}
shift $(($# > 0 ? 1 : 0))
# Whether line $1 is one of the lines of $2.
has_line() { grep -qx -- "$1" <<<"$2"; }
names=$(while IFS='|' read -r name _; do echo "$name"; done <<<"$COMMANDS")
for wanted in "$@"; do
    has_line "$wanted" "$names" ||
        { echo "scripts/gpu_benchmarks.sh: no command named $wanted; the names:" $names >&2; exit 2; }
done
mkdir -p "$log_dir"
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.cuda.get_device_name(), 'torch', torch.__version__)" | tee "$log_dir/device.txt" ||
    { echo "scripts/gpu_benchmarks.sh measures a CUDA device, and torch sees none" >&2; exit 1; }

failed=()
while IFS='|' read -r name command; do
    if (($#)) && ! has_line "$name" "$(printf '%s\n' "$@")"; then continue; fi
    words=(${command#tty })
    words[0]=$python
    # Each training run in a folder of its own under the log folder.
    [[ $command == *scripts/train.py* ]] && words+=("hydra.run.dir=$log_dir/runs/$name")
    if [[ $command == tty\ * ]]; then
        # The progress bar draws only on a terminal: give the run one.
        words=("$python" -c 'import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)' "${words[@]}")
    fi
    echo "== $name: ${command#tty }"
    start=$(date +%s)
    if timeout "$limit" "${words[@]}" >"$log_dir/$name.log" 2>&1; then
        echo "   done in $(($(date +%s) - start)) s"
    else
        echo "   FAILED (status $?, after $(($(date +%s) - start)) s): see $log_dir/$name.log"
        failed+=("$name")
    fi
done <<<"$COMMANDS"

echo
echo "== figures (logs in $log_dir)"
cat "$log_dir/device.txt"
# The sweep's table and ratio lines; each run's epoch lines, from its own log.
[[ -f $log_dir/sweep.log ]] && sed -n '/throughput sweep/,$p' "$log_dir/sweep.log"
for run in "$log_dir"/runs/*/; do
    [[ -f ${run}train.log ]] || continue
    echo "-- $(basename "$run")"
    grep -ho 'epoch [0-9]*/[0-9]*:.*' "$run"train.log
done
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
