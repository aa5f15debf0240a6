"""tools/kernel_parts.py: nsys's kernel summary (CSV) grouped into the parts of a training step."""

import pathlib
import subprocess
import sys

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "kernel_parts.py"

# the layout of `nsys stats --report cuda_gpu_kern_sum --format csv`, a title line first
SUMMARY = """Processing [report.sqlite] with [cuda_gpu_kern_sum.py]...
"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"
40.0,4000000,960,4166.7,4000.0,3000,9000,100.0,"sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64"
20.0,2000000,480,4166.7,4000.0,3000,9000,100.0,"void lora_forward_kernel<__half>(__half *, const __half *, int)"
15.0,1500000,240,6250.0,6000.0,5000,9000,100.0,"void (anonymous namespace)::attention_backward_kernel<__half, 64>(...)"
5.0,500000,240,2083.3,2000.0,1000,3000,100.0,"void cutlass::Kernel2<cutlass_80_wmma_tensorop_f16_s161616gemm_f16_32x32_128x2_tn_align8>(Params)"
20.0,2000000,1200,1666.7,1600.0,1000,3000,100.0,"void layernorm_forward_kernel<__half>(...)"
"""


def test_the_parts_per_step(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text(SUMMARY)
    out = subprocess.run([sys.executable, str(TOOL), str(path), "--steps", "10"], capture_output=True, text=True,
                         check=True).stdout
    rows = {line[:28].strip(): line[28:].split() for line in out.splitlines()[1:]}
    assert rows["frozen products (cuBLASLt)"] == ["0.450", "120.0"]  # (4 + 0.5) ms, 960 + 240 kernels, / 10
    assert rows["LoRA kernels"] == ["0.200", "48.0"]
    assert rows["attention"] == ["0.150", "24.0"]
    assert rows["the rest"] == ["0.200", "120.0"]
