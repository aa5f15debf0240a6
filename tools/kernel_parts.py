"""Per-part GPU time of a profiled run: reads the CSV of `nsys stats --report cuda_gpu_kern_sum --format csv`
(a row per kernel name: "Total Time (ns)", "Instances", ..., "Name") and prints the kernel time per part of
the step (the README's table: frozen products, LoRA, attention, the rest), per step when --steps is given.

    nsys stats --report cuda_gpu_kern_sum --format csv -o OUT report.nsys-rep
    python tools/kernel_parts.py OUT_cuda_gpu_kern_sum.csv [--steps N]
"""

import argparse
import csv
import re
import sys

# part: a pattern of the kernel names it holds (the first that matches wins; cuBLASLt's kernels are
# named by CUTLASS / cuBLAS: gemm, xmma, nvjet, cutlass)
PARTS = [
    ("LoRA kernels", re.compile(r"lora", re.I)),
    ("attention", re.compile(r"attention", re.I)),
    ("frozen products (cuBLASLt)", re.compile(r"gemm|xmma|nvjet|cutlass|splitK", re.I)),
    ("the rest", re.compile(r".")),
]


def parts(rows):
    """{part: (total ns, instances)} of the kernel rows"""
    out = {name: [0, 0] for name, _ in PARTS}
    for row in rows:
        name = row["Name"]
        part = next(p for p, pattern in PARTS if pattern.search(name))
        out[part][0] += int(float(row["Total Time (ns)"]))
        out[part][1] += int(float(row["Instances"]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--steps", type=int, default=1, help="the profiled steps, to print per step")
    args = parser.parse_args()
    with open(args.csv, newline="") as f:
        lines = [line for line in f if "," in line]  # nsys may print a title line before the header
    totals = parts(csv.DictReader(lines))
    print(f"{'part':<28} {'ms per step':>12} {'kernels per step':>17}")
    for name, (ns, count) in totals.items():
        print(f"{name:<28} {ns / 1e6 / args.steps:>12.3f} {count / args.steps:>17.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
