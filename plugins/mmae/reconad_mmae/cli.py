"""``reconad mmae video``: train the 3-D MMAE on normal frames, report frame-level AUROC on labelled frames."""
from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mmae", help="MMAE (paper 002) tools: `reconad mmae video ...`")
    sub = p.add_subparsers(dest="mmae_command", required=True)
    v = sub.add_parser("video", help="train the 3-D MMAE on normal frames, then frame-level AUROC on test frames",
                       description="Train MMAE's video variant (3-D convolutions, cubes of 16 grey frames, "
                                   "K = 4 scales) on --train, score every frame of --frames and compute the "
                                   "frame-level AUROC against --labels.")
    v.add_argument("--train", required=True, help="normal frames: a folder of images or a video file")
    v.add_argument("--frames", required=True, help="test frames: a folder of images or a video file")
    v.add_argument("--labels", required=True, help="one 0/1 per test frame (.txt/.csv, last field; or .npy)")
    v.add_argument("--out", default=None, help="write frame_scores.csv and metrics.json here")
    v.add_argument("--size", type=int, default=64, help="frames are resized to size x size (default 64)")
    v.add_argument("--epochs", type=int, default=10)
    v.add_argument("--batch-size", type=int, default=8)
    v.add_argument("--lr", type=float, default=1e-4)
    v.add_argument("--scales", type=int, default=4, help="K (default 4, paper §4.2)")
    v.add_argument("--gamma", type=float, default=0.5)
    v.add_argument("--slots", type=int, default=60)
    v.add_argument("--fuser", choices=("attention", "mean"), default="attention")
    v.add_argument("--train-stride", type=int, default=2, help="frames between training cubes")
    v.add_argument("--test-stride", type=int, default=1, help="frames between scored cubes")
    v.add_argument("--device", default="cpu")
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(func=_cmd_video)


def _cmd_video(args: argparse.Namespace) -> int:
    from .video import run_video

    res = run_video(args.train, args.frames, args.labels, out=args.out, size=args.size, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, train_stride=args.train_stride,
                    test_stride=args.test_stride, seed=args.seed, device=args.device,
                    model_options={"scales": args.scales, "gamma": args.gamma, "slots": args.slots,
                                   "fuser": args.fuser})
    print(f"frame-level AUROC {res.auroc:.4f} over {len(res.labels)} frames ({int(res.labels.sum())} anomalous), "
          f"{res.seconds:.0f} s")
    for what, path in res.files.items():
        print(f"{what}: {path}")
    return 0
