"""Files of a Hub dataset repository, read in byte ranges through an on-disk block cache.

``hf://datasets/<org>/<name>[@<revision>][/<folder>]`` names a folder of a dataset repository, as
``the_well`` and ``HfFileSystem`` spell it (The Well hosts each of its datasets as
``polymathic-ai/<dataset_name>``, with ``data/<split>/*.hdf5`` and ``stats.yaml`` at the root).

A :class:`HubFolder` pins the revision to one commit and lists the folder once, through
huggingface_hub's ``HfFileSystem``; both answers are kept on disk, so a later process can work with
``HF_HUB_OFFLINE=1``. A :class:`HubFile` reads through fixed-size blocks: a missing run of blocks is
fetched with one HTTP ``Range`` request, and each block is written under its final name only once
it is complete (temporary file, then rename), so a dropped connection leaves nothing partial. Reads
copy straight from the block files into the caller's buffer: memory holds only what is asked for.

Cache layout, under :func:`default_cache_dir` or ``cache_dir``::

    datasets--<org>--<name>/
        refs/<revision>                          the commit the revision pointed at
        listings/<commit>/<folder>.json          {path: size} of the folder's files
        blocks/<commit>/<path in repo>/<block size>-<index>
"""

from __future__ import annotations

import atexit
import io
import json
import os
import re
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import h5py
from huggingface_hub import constants

HUB_PREFIX = "hf://"
DEFAULT_BLOCK_SIZE = 8 * 2**20  # The Well repacks its Hub files in 8 MiB pages (h5repack -S PAGE -G 8 MiB)
MAX_REQUEST_BYTES = 64 * 2**20  # one Range request fetches at most this much (memory stays bounded)
DEFAULT_RETRIES = 5  # huggingface_hub's default for a failed request

THE_WELL_ORG = "polymathic-ai"
THE_WELL_DATASETS = (
    "acoustic_scattering_discontinuous", "acoustic_scattering_inclusions", "acoustic_scattering_maze",
    "active_matter", "convective_envelope_rsg", "euler_multi_quadrants_openBC", "euler_multi_quadrants_periodicBC",
    "gray_scott_reaction_diffusion", "helmholtz_staircase", "MHD_64", "MHD_256", "planetswe",
    "post_neutron_star_merger", "rayleigh_benard", "rayleigh_benard_uniform", "rayleigh_taylor_instability",
    "shear_flow", "supernova_explosion_64", "supernova_explosion_128", "turbulence_gravity_cooling",
    "turbulent_radiative_layer_2D", "turbulent_radiative_layer_3D", "viscoelastic_instability",
)
"""The Well's dataset names (``the_well.data.utils.WELL_DATASETS``); each is ``hf://datasets/polymathic-ai/<name>``."""

_URL_RE = re.compile(r"^hf://datasets/(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<folder>.*))?$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_COMMITS: dict[tuple[str, str, str], str] = {}  # (endpoint, repo, revision) -> commit, once per process


class HubReadError(ConnectionError):
    """A transfer from the Hub failed; nothing partial was kept in the cache."""


def is_hub_url(path) -> bool:
    """Whether ``path`` is an ``hf://`` URL (a :class:`pathlib.Path` never is: it would collapse the ``//``)."""
    return isinstance(path, str) and path.startswith(HUB_PREFIX)


def default_cache_dir() -> Path:
    """``$PHYSFM_HUB_CACHE``, else ``$HF_HOME/physfm/blocks`` (read at call time)."""
    return Path(os.environ.get("PHYSFM_HUB_CACHE") or Path(constants.HF_HOME) / "physfm" / "blocks")


def default_block_size() -> int:
    """``$PHYSFM_HUB_BLOCK_SIZE`` bytes, else :data:`DEFAULT_BLOCK_SIZE`."""
    text = os.environ.get("PHYSFM_HUB_BLOCK_SIZE")
    if not text:
        return DEFAULT_BLOCK_SIZE
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"PHYSFM_HUB_BLOCK_SIZE: got {text!r}, expected a positive number of bytes")
    return int(text)


@dataclass(frozen=True)
class HubUrl:
    """``hf://datasets/<repo_id>[@<revision>][/<folder>]``, parsed."""

    repo_id: str
    revision: str | None
    folder: str

    @classmethod
    def parse(cls, text: str) -> HubUrl:
        match = _URL_RE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a Hub dataset path; expected hf://datasets/<org>/<name>[@<revision>]"
                             f"[/<folder>], e.g. hf://datasets/{THE_WELL_ORG}/shear_flow")
        revision = unquote(match["revision"]) if match["revision"] else None
        return cls(match["repo"], revision, (match["folder"] or "").strip("/"))

    def __str__(self) -> str:
        at = f"@{quote(self.revision, safe='')}" if self.revision else ""
        return f"{HUB_PREFIX}datasets/{self.repo_id}{at}" + (f"/{self.folder}" if self.folder else "")


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` appears at ``path`` whole or not at all (a crash leaves at most a hidden temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def transport_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises when a request fails on the way (imported on call: httpx2 is not light)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    return httpx2.TransportError, HfHubHTTPError


class HubFolder:
    """A folder of a Hub dataset repository at one commit, its files read through the block cache.

    Args:
        url: ``hf://datasets/<org>/<name>[@<revision>][/<folder>]``; the revision (a branch, tag or commit,
            default ``main``) is resolved to a commit once per process, so every file comes from the same commit.
        cache_dir: where blocks, listings and resolved revisions are kept (default :func:`default_cache_dir`).
        block_size: bytes per cached block (default :func:`default_block_size`); part of the cache key.
        retries: retries of a failed request, with huggingface_hub's exponential back-off.

    ``folder / "stats.yaml"`` is a :class:`HubFile`; ``folder.iterdir("data/train")`` lists a sub-folder.
    """

    def __init__(self, url: str, cache_dir: str | os.PathLike | None = None, block_size: int | None = None,
                 retries: int = DEFAULT_RETRIES):
        self.url = HubUrl.parse(url)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.block_size = default_block_size() if block_size is None else int(block_size)
        if self.block_size < 1:
            raise ValueError(f"block_size: got {block_size!r}, expected a positive number of bytes")
        self.retries = int(retries)
        self.endpoint = constants.ENDPOINT  # read at call time: huggingface_hub resolves HF_ENDPOINT at import
        self.repo_dir = self.cache_dir / ("datasets--" + self.url.repo_id.replace("/", "--"))
        self.commit = self._resolve_commit()
        self.files = self._listing()  # path relative to the folder -> size in bytes

    def __str__(self) -> str:
        return str(self.url)

    def __repr__(self) -> str:
        return f"HubFolder({str(self)!r}, commit={self.commit[:10]!r}, cache_dir={str(self.cache_dir)!r})"

    def is_dir(self) -> bool:
        return True

    def is_file(self) -> bool:
        return False

    def __truediv__(self, path: str) -> HubFile:
        return HubFile(self, str(path).strip("/"))

    def iterdir(self, sub: str = "") -> list[HubFile]:
        """The files directly inside ``sub`` (a folder path relative to this one), sorted by name."""
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        return [self / p for p in sorted(self.files) if p.startswith(prefix) and "/" not in p[len(prefix):]]

    def where(self) -> str:
        """``the Hub at <endpoint> (commit <sha>)``: for messages."""
        return f"the Hub at {self.endpoint} (commit {self.commit[:10]})"

    # -- revision -> commit, and the folder's listing, both kept on disk for offline use ----------------------
    def _resolve_commit(self) -> str:
        revision = self.url.revision or constants.DEFAULT_REVISION
        key = (self.endpoint, self.url.repo_id, revision)
        ref_file = self.repo_dir / "refs" / quote(revision, safe="")
        if constants.is_offline_mode():
            if _COMMIT_RE.match(revision):
                return revision
            if ref_file.is_file():
                return ref_file.read_text().strip()
            raise FileNotFoundError(
                f"{self}: HF_HUB_OFFLINE=1 and this revision was never read online with the cache {self.cache_dir}; "
                "read it once online (or unset HF_HUB_OFFLINE), or `physfm download` a copy to read locally")
        if key in _COMMITS:
            commit = _COMMITS[key]
            if not ref_file.is_file():  # another cache_dir resolved it: this one needs it too, for offline use
                _write_atomically(ref_file, commit.encode())
            return commit
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            commit = HfApi(endpoint=self.endpoint).dataset_info(self.url.repo_id, revision=revision).sha
        except RevisionNotFoundError:
            raise FileNotFoundError(f"{self}: revision {revision!r} does not exist in dataset repository "
                                    f"{self.url.repo_id!r} on {self.endpoint}; expected a branch, tag or commit "
                                    "id") from None
        except RepositoryNotFoundError:
            raise FileNotFoundError(f"{self}: no dataset repository {self.url.repo_id!r} on {self.endpoint} (or "
                                    f"it is private and no valid token was given){self._close_well_name()}") from None
        except transport_errors() as error:
            cached = " (a copy read earlier is cached: set HF_HUB_OFFLINE=1 to use it)" if ref_file.is_file() else ""
            raise HubReadError(f"{self}: could not reach the Hub at {self.endpoint} ({type(error).__name__}: "
                               f"{error}); check the connection (and HF_ENDPOINT) and retry{cached}") from None
        _write_atomically(ref_file, commit.encode())
        _COMMITS[key] = commit
        return commit

    def _close_well_name(self) -> str:
        org, _, name = self.url.repo_id.partition("/")
        if org != THE_WELL_ORG or name in THE_WELL_DATASETS:
            return ""
        import difflib

        close = difflib.get_close_matches(name, THE_WELL_DATASETS, n=1)
        return (f"; did you mean {THE_WELL_ORG}/{close[0]}?" if close else
                f"; The Well's datasets are {', '.join(THE_WELL_DATASETS)}")

    def _listing(self) -> dict[str, int]:
        listing = self.repo_dir / "listings" / self.commit / (quote(self.url.folder, safe="") + ".json")
        if listing.is_file():  # a commit's tree never changes
            return json.loads(listing.read_text())
        if constants.is_offline_mode():
            raise FileNotFoundError(f"{self}: HF_HUB_OFFLINE=1 and its file list (commit {self.commit[:10]}) is not "
                                    f"in the cache {self.cache_dir}; read it once online, or unset HF_HUB_OFFLINE")
        from huggingface_hub import HfFileSystem

        base = f"datasets/{self.url.repo_id}@{self.commit}" + (f"/{self.url.folder}" if self.url.folder else "")
        try:
            entries = HfFileSystem(endpoint=self.endpoint).find(base, detail=True)
        except FileNotFoundError:
            entries = {}
        except transport_errors() as error:
            raise HubReadError(f"{self}: listing its files on the Hub at {self.endpoint} failed "
                               f"({type(error).__name__}: {error}); check the connection and retry") from None
        files = {name[len(base) + 1:]: int(info["size"]) for name, info in entries.items()
                 if info["type"] == "file" and name.startswith(base + "/")}
        unsafe = [p for p in files if ".." in p.split("/") or p.startswith("/")]
        if unsafe:  # the paths become cache paths
            raise ValueError(f"{self}: the Hub listed unsafe file paths {unsafe[:3]}; refusing to cache them")
        if not files:
            raise FileNotFoundError(f"{self}: no such folder (or an empty one) in dataset repository "
                                    f"{self.url.repo_id!r} at commit {self.commit[:10]} on {self.endpoint}")
        _write_atomically(listing, json.dumps(files, indent=0).encode())
        return files


_OPEN_HDF5: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_hdf5_files() -> None:
    # An h5py file over a Python file object must close before interpreter teardown, or HDF5 crashes there.
    for f in list(_OPEN_HDF5):
        try:
            f.close()
        except Exception:
            pass


class HubFile:
    """One file of a :class:`HubFolder` (``path`` relative to it), read through the block cache."""

    def __init__(self, folder: HubFolder, path: str):
        self.folder = folder
        self.path = path
        self.size: int | None = folder.files.get(path)
        self.repo_path = f"{folder.url.folder}/{path}" if folder.url.folder else path
        self._blocks = folder.repo_dir / "blocks" / folder.commit / self.repo_path

    def __str__(self) -> str:
        return f"{self.folder}/{self.path}"

    def __repr__(self) -> str:
        return f"HubFile({str(self)!r}, size={self.size})"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1]

    def is_file(self) -> bool:
        return self.size is not None

    def read_bytes(self) -> bytes:
        buffer = bytearray(self._size())
        self.read_into(0, memoryview(buffer))
        return bytes(buffer)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open(self) -> io.RawIOBase:
        """A seekable binary file object over the block cache. Unbuffered on purpose: a read-ahead buffer would
        fetch the next block for a read that ends just before it."""
        return _BlockReader(self)

    def open_hdf5(self) -> h5py.File:
        """The file as a read-only ``h5py.File``; HDF5 reads only the byte ranges it needs."""
        f = h5py.File(self.open(), "r")
        _OPEN_HDF5.add(f)
        return f

    # -- the block cache --------------------------------------------------------------------------------------
    def _size(self) -> int:
        if self.size is None:
            raise FileNotFoundError(f"{self} does not exist (commit {self.folder.commit[:10]})")
        return self.size

    def block_path(self, index: int) -> Path:
        return self._blocks / f"{self.folder.block_size}-{index}"

    def _block_length(self, index: int) -> int:
        return min(self.folder.block_size, self._size() - index * self.folder.block_size)

    def _is_cached(self, index: int) -> bool:
        try:  # a block of the wrong length (a truncated disk, someone's edit) is fetched again
            return self.block_path(index).stat().st_size == self._block_length(index)
        except FileNotFoundError:
            return False

    def read_into(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the file's bytes from ``offset`` on, fetching the blocks that are not cached."""
        if len(view) == 0:
            return
        size, block = self._size(), self.folder.block_size
        if offset < 0 or offset + len(view) > size:
            raise ValueError(f"{self}: bytes {offset}..{offset + len(view)} are outside the {size}-byte file")
        first, last = offset // block, (offset + len(view) - 1) // block
        missing = [i for i in range(first, last + 1) if not self._is_cached(i)]
        per_request = max(1, MAX_REQUEST_BYTES // block)
        while missing:  # consecutive missing blocks travel in one request
            run = [missing.pop(0)]
            while missing and missing[0] == run[-1] + 1 and len(run) < per_request:
                run.append(missing.pop(0))
            self._fetch_blocks(run[0], run[-1])
        for i in range(first, last + 1):
            start = max(offset, i * block)
            end = min(offset + len(view), (i + 1) * block)
            with open(self.block_path(i), "rb") as f:
                f.seek(start - i * block)
                if f.readinto(view[start - offset:end - offset]) != end - start:
                    raise OSError(f"{self.block_path(i)}: cached block shorter than expected; delete it")

    def _fetch_blocks(self, first: int, last: int) -> None:
        block = self.folder.block_size
        start, end = first * block, min((last + 1) * block, self._size())
        what = f"{self}: bytes {start}..{end}"
        if constants.is_offline_mode():
            raise FileNotFoundError(f"{what} are not in the block cache {self.folder.cache_dir} and HF_HUB_OFFLINE=1 "
                                    "forbids fetching them; read them once online (or unset HF_HUB_OFFLINE), or "
                                    "`physfm download` a copy to read locally")
        data = self._fetch(start, end, what)
        for i in range(first, last + 1):
            _write_atomically(self.block_path(i), data[(i - first) * block:(i - first + 1) * block])

    def _fetch(self, start: int, end: int, what: str) -> bytes:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

        folder = self.folder
        url = hf_hub_url(folder.url.repo_id, self.repo_path, repo_type="dataset", revision=folder.commit,
                         endpoint=folder.endpoint)
        headers = {**build_hf_headers(), "Range": f"bytes={start}-{end - 1}"}
        try:
            response = http_backoff("GET", url, headers=headers, max_retries=folder.retries,
                                    timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
            hf_raise_for_status(response)
        except transport_errors() as error:
            raise HubReadError(
                f"{what}: reading from {folder.where()} failed ({type(error).__name__}: {error}; "
                f"retried up to {folder.retries} times); nothing partial was cached. Check the connection (and "
                "HF_ENDPOINT) and retry, or `physfm download` a copy to read locally") from None
        whole = response.status_code == 200 and start == 0 and end == self._size()  # a range that is the whole file
        if (response.status_code != 206 and not whole) or len(response.content) != end - start:
            raise HubReadError(f"{what}: {folder.where()} answered {response.status_code} with "
                               f"{len(response.content)} bytes, expected 206 with {end - start} (a byte range); "
                               "a proxy that drops Range headers would send whole files")
        return response.content


class _BlockReader(io.RawIOBase):
    """The raw, seekable stream under :meth:`HubFile.open`."""

    def __init__(self, file: HubFile):
        super().__init__()
        self._file = file
        self._size = file._size()
        self._pos = 0

    @property
    def name(self) -> str:
        return str(self._file)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self._file}: negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        self._file.read_into(self._pos, view[:n])
        self._pos += n
        return n
