"""Reading a Well dataset over ``hf://`` from the local Hub test server, side by side in one run.

For each block size: the bytes the server sends to open the dataset (headers) and to read one window, against
the file's size; and the time per window with a cold block cache, a warm one, and from the local file.

    python scripts/benchmark_hub_reads.py [--resolution 256 256] [--n_windows 8] [--block_sizes 65536 1048576 8388608]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from physfm._cli_parsing import Parser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the local Hub server lives with the tests


def per_window_ms(dataset, indices: list[int]) -> float:
    start = time.perf_counter()
    for i in indices:
        dataset[i]
    return 1e3 * (time.perf_counter() - start) / len(indices)


def main() -> None:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, nargs=2, default=(256, 256))
    parser.add_argument("--n_traj", type=int, default=2)
    parser.add_argument("--n_steps", type=int, default=24)
    parser.add_argument("--n_windows", type=int, default=8)
    parser.add_argument("--block_sizes", type=int, nargs="+", default=[2**16, 2**20, 2**23])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    from hub_server import HubServer
    from huggingface_hub import HfApi, constants

    from physfm.data import WellWindowDataset
    from physfm.data.hub_files import HubFolder
    from physfm.data.toy import write_toy_dataset
    from physfm.data.well_format import MARKER

    with tempfile.TemporaryDirectory() as tmp, HubServer(Path(tmp) / "hub") as server:
        constants.ENDPOINT = server.endpoint  # huggingface_hub reads HF_ENDPOINT at import; point it here
        constants.HUGGINGFACE_CO_URL_TEMPLATE = server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        constants.HF_HUB_DISABLE_XET = True
        local = write_toy_dataset(Path(tmp) / "local", n_traj=(args.n_traj, 0, 0), n_steps=args.n_steps,
                                  shape=tuple(args.resolution))
        api = HfApi(endpoint=server.endpoint)
        api.create_repo("polymathic-ai/bench", repo_type="dataset")
        api.upload_folder(repo_id="polymathic-ai/bench", repo_type="dataset", folder_path=local,
                          ignore_patterns=[MARKER])
        url = "hf://datasets/polymathic-ai/bench"

        reference = WellWindowDataset(local)
        size = reference.files[0].stat().st_size
        rng = np.random.default_rng(0)
        indices = rng.choice(len(reference), size=min(args.n_windows, len(reference)), replace=False).tolist()
        reference[indices[0]]  # open the file outside the timed region
        local_ms = per_window_ms(reference, indices)
        print(f"file {size / 2**20:.1f} MiB, {len(reference)} windows of 5 frames at {tuple(args.resolution)}, "
              f"{len(indices)} windows timed; local file: {local_ms:.2f} ms/window")
        print(f"{'block':>9} {'header':>10} {'1 window':>10} {'of file':>8} {'cold ms':>9} {'warm ms':>9} "
              f"{'cold/warm':>9}")
        for block in args.block_sizes:
            cache = Path(tmp) / f"cache-{block}"
            served = lambda: sum(server.bytes_served.values())  # noqa: E731
            before = served()
            cold = WellWindowDataset(HubFolder(url, cache_dir=cache, block_size=block))
            header = served() - before
            before = served()
            cold[indices[0]]
            window = served() - before
            cold_ms = per_window_ms(cold, indices[1:])  # windows the first did not already fetch
            warm = WellWindowDataset(HubFolder(url, cache_dir=cache, block_size=block))
            warm[indices[0]]
            warm_ms = per_window_ms(warm, indices[1:])
            print(f"{block / 2**10:>7.0f}Ki {header / 2**10:>8.0f}Ki {window / 2**10:>8.0f}Ki {window / size:>8.1%} "
                  f"{cold_ms:>9.2f} {warm_ms:>9.2f} {cold_ms / warm_ms:>8.1f}x")


if __name__ == "__main__":
    main()
