"""Open a 1 GiB float32 safetensors file and read one tensor: lorafast (lazy mmap) against
safetensors.numpy.load_file, and safetensors' own lazy safe_open for reference.

Each reader runs in a fresh interpreter, which reports the time to open the file, the time to
read (and touch every byte of) one 64 MiB tensor, and its peak RSS above the RSS it had after
its imports. The file is in the page cache (it was just written) for every reader.

    python bench/bench_safetensors.py [--dir DIR] [--repeat 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

N_TENSORS, ROWS, COLS = 16, 4096, 4096  # 16 x 64 MiB = 1 GiB of float32
TARGET = "layers.7.weight"

READERS = {
    "lorafast safe_open + get_tensor": (
        "import lorafast.safetensors as s",
        "f = s.safe_open(PATH)",
        "x = f.get_tensor(TARGET)",
    ),
    "safetensors.numpy.load_file": (
        "import safetensors.numpy as s",
        "f = s.load_file(PATH)",
        "x = f[TARGET]",
    ),
    "safetensors safe_open(np) + get_tensor": (
        "from safetensors import safe_open",
        "f = safe_open(PATH, framework='np')",
        "x = f.get_tensor(TARGET)",
    ),
}

CHILD = """
import resource, sys, time
{imp}
PATH, TARGET = sys.argv[1], sys.argv[2]
def rss_mib():
    with open("/proc/self/status") as s:
        return next(int(l.split()[1]) for l in s if l.startswith("VmRSS")) / 1024
base = rss_mib()
t0 = time.perf_counter()
{open}
t1 = time.perf_counter()
after_open = rss_mib()
{read}
total = float(x.sum(dtype="float64"))  # touch every byte of the tensor
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(t1 - t0, t2 - t1, after_open - base, peak - base, total)
"""


def write_file(path):
    import safetensors.numpy

    block = np.random.default_rng(0).standard_normal((ROWS, COLS), dtype=np.float32)
    safetensors.numpy.save_file({f"layers.{i}.weight": block for i in range(N_TENSORS)}, path)
    return float(block.sum(dtype="float64"))


def run(reader, path):
    imp, opn, read = READERS[reader]
    code = CHILD.format(imp=imp, open=opn, read=read)
    out = subprocess.run([sys.executable, "-c", code, path, TARGET], capture_output=True, text=True, check=True)
    t_open, t_read, rss_open, rss_peak, total = map(float, out.stdout.split())
    return t_open, t_read, rss_open, rss_peak, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="folder for the 1 GiB file (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "bench.safetensors")
        expected = write_file(path)
        print(f"file: {path}, {os.path.getsize(path) / 2**30:.3f} GiB, {N_TENSORS} tensors of {ROWS}x{COLS} f32")
        print(f"cpu: {os.cpu_count()} cores; median of {args.repeat} runs, fresh interpreter each")
        results = {}
        for reader in READERS:
            runs = [run(reader, path) for _ in range(args.repeat)]
            assert all(abs(r[4] - expected) <= 1e-6 * abs(expected) + 1e-3 for r in runs), reader
            results[reader] = [statistics.median(col) for col in zip(*runs)][:4]
        print(f"{'reader':42s} {'open ms':>10s} {'read 1 ms':>10s} {'RSS after open MiB':>19s} {'peak RSS MiB':>13s}")
        for reader, (t_open, t_read, rss_open, rss_peak) in results.items():
            print(f"{reader:42s} {t_open * 1e3:10.2f} {t_read * 1e3:10.2f} {rss_open:19.1f} {rss_peak:13.1f}")
        ours, ref = results["lorafast safe_open + get_tensor"], results["safetensors.numpy.load_file"]
        print(
            f"ratio safetensors.numpy.load_file / lorafast: open {ref[0] / ours[0]:.0f}x slower, "
            f"open+read {(ref[0] + ref[1]) / (ours[0] + ours[1]):.1f}x slower, peak RSS {ref[3] / max(ours[3], 1e-9):.1f}x larger"
        )


if __name__ == "__main__":
    main()
