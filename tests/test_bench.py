"""The benchmarks' own checks, which must refuse a bad combination before minutes of timing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_bench_refuses_bf16_with_compile_on_a_cpu_before_it_times_anything(capsys):
    """`bench/train.py --bf16 --compile` on a CPU ran the pad-to-512 and our pipelines (minutes on two
    cores) and only then stopped with the usage error; the options are now checked as they are parsed."""
    bench = bench_module("train")
    with pytest.raises(SystemExit) as refused:
        bench.parse_args(["--bf16", "--compile", "--device", "cpu"])
    assert refused.value.code == 2
    assert "--bf16 and --compile: time one at a time on a CPU" in capsys.readouterr().err
    args = bench.parse_args(["--bf16", "--device", "cpu", "--steps", "1"])
    assert (args.bf16, args.compile, args.steps) == (True, False, 1)
