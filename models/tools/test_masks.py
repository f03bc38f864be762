"""Writes the test split's 224x224 reference masks as raw uint8 [N, 224, 224] ({0, 1}), in the order of the
``test.u8`` set ``lfusion.density --write-sets`` writes, for scripts/live-quality.ts.

    cd models && /usr/bin/python3 tools/test_masks.py --prepared build/hc18 --out build/ood-scores/sets/test-masks.u8
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lfusion.data import load_prepared  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--out", type=Path, default=Path("build/ood-scores/sets/test-masks.u8"))
    args = parser.parse_args()
    prepared = load_prepared(args.prepared)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(prepared.masks[prepared.indices("test")], dtype=np.uint8).tofile(args.out)


if __name__ == "__main__":
    main()
