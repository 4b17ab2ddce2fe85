"""The ``icephase`` command line: classify, references, calibrate, train, export, inspect."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .model import DenoiserConfig
    from .train import TrainConfig

    d, m = TrainConfig(), DenoiserConfig()
    p = sub.add_parser("train", help="train a denoiser on ideal reference structures (paper's Algorithm 1)")
    p.add_argument("run_dir", help="folder for config.json, loss.csv, loss.png, checkpoint.pt, denoiser.pt")
    p.add_argument("--reference", action="append", default=[], metavar="SPEC",
                   help="[LABEL=]PHASE|LATTICE|FILE[@DENSITY]; repeat; default: the seven built-in phases")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (paper: 2e-4)")
    p.add_argument("--lr-final-fraction", type=float, default=d.lr_final_fraction,
                   help="cosine decay to lr * this at the last step (1 = constant)")
    p.add_argument("--sigma-max", type=float, default=d.sigma_max, help="noise sigma ~ U(0, sigma_max), Angstrom")
    p.add_argument("--scale-jitter", type=float, default=d.scale_jitter)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--r-max", type=float, default=m.r_max)
    p.add_argument("--num-layers", type=int, default=m.num_layers)
    p.add_argument("--l-max", type=int, default=m.l_max)
    p.add_argument("--num-features", type=int, default=m.num_features)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--resume", action="store_true", help="continue from run_dir/checkpoint.pt")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .model import DenoiserConfig
    from .train import TrainConfig, train

    config = TrainConfig(
        references=args.reference,
        model=DenoiserConfig(r_max=args.r_max, num_layers=args.num_layers, l_max=args.l_max,
                             num_features=args.num_features),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_final_fraction=args.lr_final_fraction,
        sigma_max=args.sigma_max, scale_jitter=args.scale_jitter, seed=args.seed, device=args.device,
        threads=args.threads,
    )
    out = train(config, args.run_dir, resume=args.resume)
    print(f"denoiser written to {out}; loss curve in {Path(args.run_dir) / 'loss.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icephase",
        description="Classify water oxygens into ice phases (Ih, Ic, II, III, VI, VII, sI) or liquid.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # every expected failure is a ValueError subclass with a message that says how to fix it
        print(f"icephase {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
