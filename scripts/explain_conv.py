"""Walk through one convolution: `python scripts/explain_conv.py`.

By default a 5x5 image with values 1..25, the Laplacian and a diagonal-edge filter, padding
valid and same, bias 1 and relu. Every part can be changed:

    python scripts/explain_conv.py --image "0 0 0 0; 0 9 9 0; 0 9 9 0; 0 0 0 0" \\
        --filter "sobel: 1 0 -1; 2 0 -2; 1 0 -1" --padding same --stride 2 --activation none

Options are plain command-line flags (argparse), not Hydra: the lesson has no config group
and writes no run directory, matrices read naturally as "0 1 0; 1 -4 1; 0 1 0", and
--help lists every option.
"""

from convnet.cli.explain import main

if __name__ == "__main__":
    main()
