"""Decoder LoRA training speed: a ~1B-parameter Llama (TinyLlama-1.1B's shape: hidden 2048,
22 layers, 32 heads, 4 key/value heads, MLP 5632, Llama-2's 32000-token vocabulary) with random
f32 weights, forward + backward tokens/s at batch 8 on real tweets (Llama-2's tokenizer, pad =
eos as the notebook), lorafast against transformers + peft, same machine, same run, same batches.

LoRA as the notebook's Llama-2 run: r=16, alpha 16, dropout 0.05 on q_proj, v_proj; the score
head trained in full; train mode; the notebook's class-weighted loss. Each implementation runs
in a fresh interpreter, which reports its peak RSS (each holds the 4.1 GB of f32 weights).

    python bench/bench_decoder.py [--steps 2] [--rounds 1] [--gradient-checkpointing] [--hf-passive] [--json out.json]
"""

import argparse

from _common import CLASS_WEIGHTS, SHARED, compare, tweet_batches, write_json

LLAMA_2 = SHARED / "models" / "meta-llama--Llama-2-7b-hf"
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
             num_key_value_heads=4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs per implementation")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--hf-passive", action="store_true",
                        help="run torch with OMP_WAIT_POLICY=PASSIVE too (lorafast's default; fairer on a loaded CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    batches = tweet_batches(str(LLAMA_2), n_batches=args.steps + 1)
    spec = dict(model=dict(path=str(LLAMA_2), pretrained=False, config=ONE_B),
                lora=dict(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]),
                warmup=1, steps=args.steps, class_weights=CLASS_WEIGHTS, seed=0, hf_passive=args.hf_passive,
                gradient_checkpointing=args.gradient_checkpointing)
    ckpt = ", gradient checkpointing" if args.gradient_checkpointing else ""
    policy = "PASSIVE" if args.hf_passive else "default"
    title = f"Llama 1.1B (batch 8, LoRA r=16 q_proj,v_proj, f32{ckpt}, torch wait policy {policy})"
    results = compare(title, spec, batches, args.rounds)
    print("(tokens/s counts the real, unpadded tokens of each batch for both implementations)")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
