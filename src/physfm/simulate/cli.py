"""``physfm simulate NAME --out DIR ...``: generate a Well-format dataset from a simulator.

Examples::

    physfm simulate shear_flow --out data/shear_flow --n_trajectories 16 --resolution 64x128 --n_steps 50
    physfm simulate shear_flow --out sf_one --n_trajectories 1 --reynolds 1e5 --schmidt 1 \\
        --n_shear 2 --n_blobs 3 --width 0.5
    physfm simulate gray_scott_reaction_diffusion --out data/gs --pattern maze --device cuda
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._cli_parsing import Parser
from . import SYSTEMS, generate
from .base import parse_resolution


def _split_fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"got {text!r}, expected three comma-separated fractions such as 0.8,0.1,0.1"
        ) from None
    return values


def build_parser() -> Parser:
    parser = Parser(
        prog="physfm simulate", description="Simulate a physical system into a Well-format dataset."
    )
    sub = parser.add_subparsers(dest="system", metavar="NAME", required=True)
    for name, system in SYSTEMS.items():
        p = sub.add_parser(name, help=system.description, description=system.description)
        res = "x".join(str(n) for n in system.default_resolution)
        p.add_argument("--out", required=True, help="output dataset directory (written atomically)")
        p.add_argument(
            "--n_trajectories", type=int, default=8, help="trajectories over all splits (default 8)"
        )
        p.add_argument("--resolution", default=None, help=f"grid points per axis joined by x, e.g. {res} (the default)")
        p.add_argument(
            "--n_steps",
            type=int,
            default=None,
            help=f"stored time steps after the initial frame (default {system.default_n_steps}, dt={system.dt})",
        )
        p.add_argument("--seed", type=int, default=0, help="seed for parameters and initial conditions")
        p.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1 (default cpu)")
        p.add_argument("--batch_size", type=int, default=None, help="trajectories simulated together")
        p.add_argument(
            "--split_fractions",
            type=_split_fractions,
            default=(0.8, 0.1, 0.1),
            help="train,valid,test fractions (default 0.8,0.1,0.1)",
        )
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--no_progress", action="store_true", help="hide progress bars")
        group = p.add_argument_group(
            "system parameters (drawn per trajectory from the system's grid when omitted)"
        )
        for param in system.parameters:
            group.add_argument(
                "--" + param.name,
                dest=f"param_{param.name}",
                metavar=param.name.upper(),
                type=param.type,
                choices=param.choices,
                default=None,
                help=param.help,
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    system = SYSTEMS[args.system]
    params = {
        key.removeprefix("param_"): value
        for key, value in vars(args).items()
        if key.startswith("param_") and value is not None
    }
    resolution = parse_resolution(args.resolution, system.n_spatial_dims)
    path = generate(
        args.system,
        args.out,
        n_trajectories=args.n_trajectories,
        resolution=resolution,
        n_steps=args.n_steps,
        seed=args.seed,
        device=args.device,
        split_fractions=args.split_fractions,
        progress=not args.no_progress,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        **params,
    )
    print(f"wrote {system.name} dataset to {path}")
    return 0
