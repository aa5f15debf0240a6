"""lorafast's training step alone, for a profiler: the per-part GPU time that tools/device_check.sh prints.
Runs bench/gpu_bench.py's lorafast forward + backward (roberta-large in fp16, Mistral-7B in bf16, real tweets
of bench/gpu_inputs) for --warmup + --steps steps and prints the number of steps run; under
`nsys profile` each kernel's total over the run, divided by that number, is its time per step
(tools/kernel_parts.py).

    nsys profile -o report python bench/gpu_parts.py roberta --steps 20
"""

import argparse
import json

import gpu_bench

PLANS = {  # workload: (bench/gpu_inputs folder, LoRA, lorafast setting)
    "roberta": ("roberta-large", gpu_bench.ROBERTA_LORA, ("fp16", "float16")),
    "mistral": ("mistral", gpu_bench.MISTRAL_LORA, ("bf16", "bfloat16")),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(PLANS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    name, lora, setting = PLANS[args.workload]
    folder, batches = gpu_bench.load_inputs(name)
    rows = gpu_bench.lorafast_rows(name, str(folder), batches, lora, [setting], args.steps, args.warmup, "cuda",
                                   False, 989.0)
    print(json.dumps(rows))
    print(f"steps run: {args.warmup + args.steps}")


if __name__ == "__main__":
    main()
