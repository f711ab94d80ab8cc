"""The analytic FLOP counter behind benchmarks/bench.py, against counts done by hand.

Convention (unet_keras.flops): one multiply-add = 2 FLOPs, convolutions only; a k x k conv with
cin -> cout channels and an H x W output costs 2*k*k*cin*cout*H*W; a stride-2 transpose conv
costs 2*k*k*cin*cout per *input* pixel; training = 3 x forward - forward(down1_conv1).
"""

from __future__ import annotations

import pytest

from unet_keras.config import ArchConfig
from unet_keras.flops import forward_flops, layer_flops, train_flops


def test_depth1_unet_by_hand():
    # 4x4x1 input, base 2, depth 1: down1 at 4x4 (2 ch), bottleneck at 2x2 (4 ch), up1 at 4x4.
    cfg = ArchConfig(input_shape=(4, 4, 1), base_filters=2, depth=1)
    hand = {
        "down1_conv1": 2 * 9 * 1 * 2 * 16,        # 576
        "down1_conv2": 2 * 9 * 2 * 2 * 16,        # 1152
        "bottleneck_conv1": 2 * 9 * 2 * 4 * 4,    # 576
        "bottleneck_conv2": 2 * 9 * 4 * 4 * 4,    # 1152
        "up1_transpose": 2 * 4 * 4 * 2 * 4,       # 2x2 kernel, 4 -> 2 ch, 2x2 input: 256
        "up1_conv1": 2 * 9 * 4 * 2 * 16,          # concat gives 4 ch in: 2304
        "up1_conv2": 2 * 9 * 2 * 2 * 16,          # 1152
        "head": 2 * 1 * 2 * 1 * 16,               # 64
    }
    assert layer_flops(cfg) == hand
    assert forward_flops(cfg) == 7232
    assert train_flops(cfg) == 3 * 7232 - 576


def test_attention_and_transpose_kernel_by_hand():
    cfg = ArchConfig(input_shape=(4, 4, 1), base_filters=2, depth=1, attention=True,
                     transpose_kernel=3)
    got = layer_flops(cfg)
    assert got["up1_transpose"] == 2 * 9 * 4 * 2 * 4   # 3x3 kernel over the 2x2 input
    assert got["up1_att_theta"] == 2 * 2 * 1 * 16      # 1x1, 2 -> F_int = 1, at 4x4
    assert got["up1_att_phi"] == 2 * 2 * 1 * 16
    assert got["up1_att_psi"] == 2 * 1 * 1 * 16        # 1x1, 1 -> 1
    assert forward_flops(cfg) == 7232 - 256 + 576 + 64 + 64 + 32


def test_size_agnostic_config_and_bad_sizes():
    cfg = ArchConfig(input_shape=(None, None, 3))
    # conv FLOPs are proportional to pixels: 512x512 is exactly 4x 256x256
    assert forward_flops(cfg, 512, 512) == 4 * forward_flops(cfg, 256, 256)
    assert forward_flops(cfg, 256, 256) == forward_flops(ArchConfig())
    with pytest.raises(ValueError, match="height and width"):
        forward_flops(cfg)
    with pytest.raises(ValueError, match="multiples of 16"):
        forward_flops(cfg, 100, 100)


def test_bench_smoke_runs_every_framework_to_the_end(tmp_path):
    """benchmarks/bench.py end to end on a tiny config, one timed call per mode: Keras here,
    PyTorch in its own worker process (torch 2.14.1 segfaulted when its optimizer loaded
    Triton into the process holding TensorFlow). A crash anywhere fails this test."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "bench.py"), "--size", "32",
         "--base-filters", "4", "--depth", "2", "--batch", "1", "--warmup", "1", "--reps", "1",
         "--latency-sizes", "32", "--matmul-n", "64", "--modes", "keras-fp32,torch-fp32",
         "--torch-threads", "1", "--intra-threads", "1", "--inter-threads", "1",
         "--no-pipeline", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=repo,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for mode in ("keras-fp32", "torch-fp32"):
        m = report["modes"][mode]
        assert "error" not in m, m
        assert len(m["train"]["seconds"]) == 1 and m["train"]["images_per_s"] > 0
        assert len(m["infer"]["seconds"]) == 1 and m["latency"]["32"]["median_s"] > 0
    assert {"matmul-float32-tensorflow", "matmul-float32-torch"} <= set(report["matmul"]["calls"])
    assert report["env"]["torch"] and report["env"]["torch_process_imported_tensorflow"] is False
    assert report["ratios"]["train"] > 0 and report["peak_rss_mib_torch_process"] > 0
    assert "ratios fastest keras / fastest torch" in proc.stdout
