"""Here, after the GPU call: turn what came back into a run directory.

Unpacks ``results.tar.gz`` into ``RUN_DIR``, rebuilds ``model.keras`` (float32) from the bf16
weight shards if they came back (:func:`benchmarks.gpu.weights.load_shards`), and prints the
device's Table 1 and the native-resolution test table. Evaluate the rebuilt model here (under
TensorFlow) with ``python evaluate.py --model RUN_DIR/model.keras --data ...`` to check it.

    python benchmarks/gpu/collect.py /work/.device/<files_at> saved_models/paper-gpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from pathlib import Path


def collect(returned: str | Path, run_dir: str | Path) -> Path | None:
    """Unpack ``returned`` (the device's ``$OUT``) into ``run_dir``; returns the rebuilt
    ``model.keras`` path, or ``None`` when no weights came back."""
    returned, run_dir = Path(returned), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(returned / "results.tar.gz") as tar:
        tar.extractall(run_dir, filter="data")
    for name in ("summary.json", "run.log"):
        if (returned / name).exists():
            shutil.copy(returned / name, run_dir / name)
    shards = sorted(returned.glob("weights-*.bin"))
    if not shards or not (run_dir / "weights" / "weights.json").exists():
        return None
    for shard in shards:
        shutil.copy(shard, run_dir / "weights" / shard.name)
    from benchmarks.gpu.weights import load_shards

    path = run_dir / "model.keras"
    load_shards(run_dir / "weights").save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("returned", help="the folder the device's $OUT files came back to")
    parser.add_argument("run_dir", help="where the run directory goes")
    args = parser.parse_args(argv)
    try:
        model = collect(args.returned, args.run_dir)
    except (OSError, ValueError, tarfile.TarError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"{summary['epochs_done']} of {summary['epochs_planned']} epochs in "
          f"{summary['train_minutes']} min on {summary['backend']}; throughput "
          f"{summary['throughput']}")
    for table in (run_dir / "run" / "table1.md", run_dir / "test-native" / "table1.md"):
        if table.exists():
            print(f"\n{table}:\n{table.read_text()}")
    print(f"\nmodel: {model}" if model else "\nno weights came back")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
