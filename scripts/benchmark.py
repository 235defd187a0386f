"""Training throughput: convnet against a hand-written PyTorch loop and the model alone.

python scripts/benchmark.py model=resnet20 data.batch_size=128   # every arm; b/c, b/b32, b/a
python scripts/benchmark.py --sweep --batch-sizes 64,128,256 --image-sizes 32,64 model=vgg11
python scripts/benchmark.py --sweep --models resnet18,vgg16_bn,resnet20 --batch-sizes 512
python scripts/benchmark.py --callbacks                           # pictures' cost, whole runs
Overrides are those of scripts/train.py.
"""

from convnet.cli.benchmark import main

if __name__ == "__main__":
    main()
