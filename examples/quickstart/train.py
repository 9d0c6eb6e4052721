"""A small stand-in for a training worker: progress lines, checkpoints, and (for one worker) a
crash, so the quick-start demo has something real to watch. Standard library only."""

from __future__ import annotations

import argparse
import io
import os
import random
import time
import zipfile
from pathlib import Path


def save_checkpoint(path: Path, step: int) -> None:
    """Write a file shaped like PyTorch's zip checkpoint format (an archive with data.pkl)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", f"step={step}".encode())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.6)
    args = parser.parse_args()
    crash_worker = int(os.environ.get("CRASH_WORKER", "-1"))
    ckpt = Path("ckpt") / f"worker{args.worker}"
    ckpt.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.worker)
    per_epoch = args.items // args.epochs
    done = 0
    loss = 2.5
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        print(f"Epoch {epoch}/{args.epochs}", flush=True)
        for _ in range(per_epoch // 20):
            time.sleep(args.delay * (1 + 0.2 * rng.random()))
            done += 20
            loss *= 0.97
            rate = done / (time.time() - start)
            print(f"Processed {done}/{args.items} items - loss: {loss:.4f} - {rate:.1f} items/s",
                  flush=True)
            if args.worker == crash_worker and done >= args.items // 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB "
                                   "(a simulated crash for the demo)")
        save_checkpoint(ckpt / f"epoch{epoch}.pt", done)
    print(f"done: {done} items", flush=True)


if __name__ == "__main__":
    main()
