"""A small Hugging Face Hub-compatible HTTP server for tests.

It implements the endpoints that ``huggingface_hub`` (2.x) and ``transformers`` (5.x) call to create a
repo, commit files to it (the "regular" upload mode only: files travel base64-encoded inside the
ndjson commit, so neither Xet nor LFS is involved), create branches and tags, and download files
(``hf_hub_download``, ``snapshot_download``, ``from_pretrained``). Model and dataset repos are served
(datasets under ``/api/datasets/...`` and ``/datasets/<repo>/resolve/...``; the store keys them
``"datasets/<repo_id>"``), with what ``HfFileSystem`` needs: tree listings, ``paths-info``, and byte
ranges (``Range: bytes=a-b``) of any file.

The server runs on 127.0.0.1 in a daemon thread and stores blobs under a temporary directory
(metadata lives in memory, with a JSON copy per repo for debugging). It stops by itself after
``lifetime_s`` seconds so that a crashed test never leaves it running.

Fault injection: ``server.drop_downloads = True`` makes every file download (GET .../resolve/...)
send its headers and the first half of the body and then drop the connection; resumption
requests (``Range``) are dropped before any response. Clients thus see a connection that fails
mid-download and never recovers, which is what a dead network link looks like.
``server.drop_range_reads = N`` cuts the next N ranged GETs instead: each sends its headers and half of
the requested bytes, then drops the connection (a link that fails mid-read; N large: a dead link).
``server.bytes_served`` counts the body bytes sent per file.

Usage in a test module::

    pytest_plugins = ["hub_server"]  # registers the `hub_server` fixture

    def test_something(hub_server):
        hub_server.endpoint      # "http://127.0.0.1:PORT", also exported as HF_ENDPOINT
        hub_server.env()         # environment for a subprocess with a fresh HF_HOME
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

MAX_BODY_BYTES = 512 * 2**20  # refuse absurd uploads instead of filling the disk
DEFAULT_BRANCH = "main"
USER = "physfm-test"  # the user every token belongs to
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def _git_blob_sha1(data: bytes) -> str:
    # The Hub's ETag for a regular (non-LFS) file is its git blob id.
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    date: str
    files: dict[str, str]  # path -> blob id (git sha1), a full snapshot of the tree


@dataclass
class Repo:
    repo_id: str
    private: bool
    kind: str  # "model" or "dataset"
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A branch, a tag, or a full commit id -> commit (None when unknown)."""
        revision = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and _COMMIT_RE.match(revision):
            oid = revision if revision in self.commits else None
        return self.commits.get(oid) if oid else None


class HubStore:
    """Repos, revisions and commits; blobs are files under ``root/blobs``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self._counter = 0

    def blob_path(self, blob_id: str) -> Path:
        return self.root / "blobs" / blob_id

    def read_blob(self, blob_id: str) -> bytes:
        return self.blob_path(blob_id).read_bytes()

    def _write_blob(self, data: bytes) -> str:
        blob_id = _git_blob_sha1(data)
        path = self.blob_path(blob_id)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return blob_id

    def create_repo(self, repo_id: str, private: bool, kind: str = "model") -> Repo:
        with self.lock:
            repo = Repo(repo_id=repo_id, private=private, kind=kind, created_at=_now_iso())
            self.repos[repo_key(kind, repo_id)] = repo
            # Like the Hub, a new repo starts with one commit holding .gitattributes.
            self.commit(repo, DEFAULT_BRANCH, "initial commit", "", {".gitattributes": _GITATTRIBUTES}, [])
            return repo

    def commit(
        self,
        repo: Repo,
        branch: str,
        title: str,
        description: str,
        additions: dict[str, bytes],
        deletions: list[tuple[str, bool]],  # (path, is_folder)
    ) -> Commit:
        with self.lock:
            parent = repo.branches.get(branch)
            files = dict(repo.commits[parent].files) if parent else {}
            for path, is_folder in deletions:
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)] if is_folder else [path] * (path in files)
                if not doomed:
                    raise KeyError(path)
                for p in doomed:
                    del files[p]
            for path, data in additions.items():
                files[path] = self._write_blob(data)
            self._counter += 1
            seed = json.dumps([repo.repo_id, parent, title, sorted(files.items()), self._counter]).encode()
            oid = hashlib.sha1(seed).hexdigest()
            commit = Commit(oid, parent, title, description, _now_iso(), files)
            repo.commits[oid] = commit
            repo.branches[branch] = oid
            self._dump(repo)
            return commit

    def _dump(self, repo: Repo) -> None:
        # A readable copy of the repo's history next to the blobs, for debugging failing tests.
        path = self.root / "repos" / (repo_key(repo.kind, repo.repo_id).replace("/", "--") + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "private": repo.private,
            "branches": repo.branches,
            "tags": repo.tags,
            "commits": {oid: c.__dict__ for oid, c in repo.commits.items()},
        }
        path.write_text(json.dumps(state, indent=1))


def repo_key(kind: str, repo_id: str) -> str:
    """How the store names a repo: ``org/name`` for a model, ``datasets/org/name`` for a dataset (as in URLs)."""
    return repo_id if kind == "model" else f"{kind}s/{repo_id}"


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class _Handler(BaseHTTPRequestHandler):
    server: _HubHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    disable_nagle_algorithm = True  # headers and body go out in separate writes: without this, each costs ~40 ms

    # -- plumbing --------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        with self.server.hub._lock:
            self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.hub._lock:
            self.server.hub._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        self.server.hub.log.append(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")

    def _route(self) -> None:
        hub = self.server.hub
        try:
            # Read the whole body first: answering an error without draining it would desynchronise
            # the keep-alive connection.
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                raise _HubError(413, f"body of {length} bytes exceeds the test server's limit")
            self._raw_body = self.rfile.read(length) if length else b""
            self._check_auth_header()
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            path = url.path
            if path.startswith("/api/"):
                form = "application/x-www-form-urlencoded" in self.headers.get("Content-Type", "")
                self._form = parse_qs(self._raw_body.decode()) if form else {}  # paths-info sends a form
                self._api(path[len("/api/") :], query)
            elif "/resolve/" in path:
                self._resolve(path.lstrip("/"))
            else:
                raise _HubError(404, f"no route for {self.command} {path}")
        except _HubError as error:
            self._send_json({"error": error.message}, error.status, error.code, error.commit)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug in the server: answer 500 rather than hang the client
            hub.errors.append(repr(error))
            self._send_json({"error": f"internal error: {error!r}"}, 500)

    do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = _route

    def _body(self) -> bytes:
        return self._raw_body

    def _json_body(self) -> dict:
        body = self._body()
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise _HubError(400, f"invalid JSON body: {error}") from None

    def _send_json(self, payload, status: int = 200, code: str | None = None, commit: str | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
        if status >= 400:
            self.send_header("X-Error-Message", payload.get("error", ""))
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _check_auth_header(self) -> None:
        self.token = None
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            self.token = header[len("Bearer ") :]
            if self.server.hub.token is not None and self.token != self.server.hub.token:
                raise _HubError(401, "Invalid credentials in Authorization header")

    def _require_write(self) -> None:
        if self.server.hub.token is not None and self.token is None:
            raise _HubError(401, "You must be authenticated to write to the Hub")

    def _repo(self, key: str) -> Repo:
        repo = self.server.hub.store.repos.get(key)
        if repo is None or (repo.private and self.server.hub.token is not None and self.token is None):
            raise _HubError(404, f"Repository {key} not found", "RepoNotFound")
        return repo

    def _commit_for(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    # -- /api/... --------------------------------------------------------------------------------
    def _api(self, path: str, query: dict[str, str]) -> None:
        hub = self.server.hub
        method = self.command
        if path == "agent-harnesses":  # huggingface_hub's agent detection; an empty registry
            return self._send_json({"standardEnvVars": [], "harnesses": {}})
        if path == "validate-yaml" and method == "POST":
            return self._validate_yaml(self._json_body())
        if path == "whoami-v2":
            if self.token is None:
                raise _HubError(401, "Invalid username or password.")
            return self._send_json({"type": "user", "name": USER, "orgs": [], "auth": {}})
        if path == "repos/create" and method == "POST":
            return self._create_repo(self._json_body())
        if path == "repos/delete" and method == "DELETE":
            self._require_write()
            body = self._json_body()
            key = repo_key(body.get("type") or "model", f"{body.get('organization') or USER}/{body['name']}")
            with hub.store.lock:
                self._repo(key)
                del hub.store.repos[key]
            return self._send_json({})

        match = re.match(r"^(?P<kind>model|dataset)s/(?P<repo>[^/]+/[^/]+)(?:/(?P<action>[a-z-]+)(?:/(?P<rest>.*))?)?$",
                         path)
        if match is None:
            raise _HubError(404, f"unsupported API path /api/{path}")
        key, action, rest = repo_key(match["kind"], match["repo"]), match["action"], match["rest"]
        if action is None and method == "GET":
            repo = self._repo(key)
            return self._send_json(self._repo_info(repo, self._commit_for(repo, DEFAULT_BRANCH)))
        repo = self._repo(key)
        if action == "revision" and method == "GET":
            return self._send_json(self._repo_info(repo, self._commit_for(repo, rest or "")))
        if action == "tree" and method == "GET":
            revision, _, sub = (rest or "").partition("/")
            return self._tree(repo, self._commit_for(repo, revision), unquote(sub), query)
        if action == "paths-info" and method == "POST":
            return self._paths_info(repo, self._commit_for(repo, rest or DEFAULT_BRANCH))
        if action == "refs" and method == "GET":
            return self._send_json(
                {
                    "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()],
                    "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo.tags.items()],
                    "converts": [],
                }
            )
        if action == "commits" and method == "GET":
            commit = self._commit_for(repo, rest or DEFAULT_BRANCH)
            history = []
            while commit is not None:
                history.append(
                    {"id": commit.oid, "title": commit.title, "message": commit.description, "authors": [],
                     "date": commit.date}
                )
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return self._send_json(history)
        if action == "preupload" and method == "POST":
            self._require_write()
            return self._preupload(repo, rest or DEFAULT_BRANCH, self._json_body(), query)
        if action == "commit" and method == "POST":
            self._require_write()
            return self._commit(repo, unquote(rest or DEFAULT_BRANCH), query)
        if action == "branch" and method in {"POST", "DELETE"}:
            self._require_write()
            return self._branch(repo, unquote(rest or ""))
        if action == "tag" and method in {"POST", "DELETE"}:
            self._require_write()
            return self._tag(repo, unquote(rest or ""))
        raise _HubError(404, f"unsupported API call {method} /api/{path}")

    def _validate_yaml(self, body: dict) -> None:
        import yaml

        content = body.get("content", "")
        errors = []
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
                if metadata is not None and not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as error:
                errors.append({"message": f"invalid YAML: {error}"})
        self._send_json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def _create_repo(self, body: dict) -> None:
        self._require_write()
        hub = self.server.hub
        kind = body.get("type") or "model"
        if kind not in ("model", "dataset"):
            raise _HubError(400, f"the test server only hosts model and dataset repos, not {kind!r}")
        name, org = body.get("name"), body.get("organization")
        if not name or not re.match(r"^[\w.-]+$", name) or (org and not re.match(r"^[\w.-]+$", org)):
            raise _HubError(400, f"invalid repo name {org!r}/{name!r}")
        repo_id = f"{org or USER}/{name}"  # like the Hub: no namespace -> the caller's
        key = repo_key(kind, repo_id)
        with hub.store.lock:
            if key in hub.store.repos:
                return self._send_json({"error": f"You already created this {kind} repo", "url": self._url(key)}, 409)
            hub.store.create_repo(repo_id, private=body.get("visibility") == "private" or bool(body.get("private")),
                                  kind=kind)
        self._send_json({"url": self._url(key), "name": repo_id, "id": repo_id})

    def _url(self, key: str) -> str:
        return f"{self.server.hub.endpoint}/{key}"

    def _repo_info(self, repo: Repo, commit: Commit) -> dict:
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            **({"modelId": repo.repo_id} if repo.kind == "model" else {}),
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def _tree(self, repo: Repo, commit: Commit, sub: str, query: dict[str, str]) -> None:
        recursive = query.get("recursive", "false").lower() in {"1", "true"}
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise _HubError(404, f"{sub} does not exist on {commit.oid}", "EntryNotFound", commit.oid)
        entries, folders = [], set()
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # every folder on the way (only the first if not recursive)
                folder = prefix + "/".join(parts[:depth])
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    entries.append(self._entry(commit, folder))
            if recursive or len(parts) == 1:
                entries.append(self._entry(commit, path))
        self._send_json(entries)

    def _entry(self, commit: Commit, path: str) -> dict:
        """A tree / paths-info entry: a file of the commit, or a folder holding some."""
        blob_id = commit.files.get(path)
        if blob_id is None:
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        return {"type": "file", "oid": blob_id, "size": self.server.hub.store.blob_path(blob_id).stat().st_size,
                "path": path}

    def _paths_info(self, repo: Repo, commit: Commit) -> None:
        # Like the Hub: paths that do not exist are left out of the answer, not an error.
        paths = self._form.get("paths") or self._json_body().get("paths", [])
        existing = [p.strip("/") for p in paths
                    if p.strip("/") in commit.files or any(f.startswith(p.strip("/") + "/") for f in commit.files)]
        self._send_json([self._entry(commit, p) for p in existing])

    def _preupload(self, repo: Repo, revision: str, body: dict, query: dict[str, str]) -> None:
        if query.get("create_pr"):
            raise _HubError(400, "the test server does not support pull requests")
        head = repo.resolve(unquote(revision))
        files = []
        for f in body.get("files", []):
            files.append({
                "path": f["path"],
                # Always "regular": content travels base64-encoded in the commit, no LFS/Xet upload.
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": head.files.get(f["path"]) if head else None,
            })
        self._send_json({"files": files, "commitOid": head.oid if head else None})

    def _commit(self, repo: Repo, branch: str, query: dict[str, str]) -> None:
        hub = self.server.hub
        if query.get("create_pr"):
            raise _HubError(400, "the test server does not support pull requests")
        branch = branch.removeprefix("refs/heads/")
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        header, additions, deletions = None, {}, []
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                additions[value["path"]] = base64.b64decode(value["content"])
            elif key in {"deletedFile", "deletedFolder"}:
                deletions.append((value["path"], key == "deletedFolder"))
            else:  # lfsFile and anything else would need an LFS/Xet store this server does not have
                raise _HubError(400, f"the test server only accepts regular files, got {key!r}")
        if header is None:
            raise _HubError(400, "commit payload has no header line")
        with hub.store.lock:
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.branches[branch]:
                raise _HubError(412, f"parent commit {parent} is not the head of {branch}")
            try:
                commit = hub.store.commit(repo, branch, header.get("summary", ""), header.get("description", ""),
                                          additions, deletions)
            except KeyError as missing:
                raise _HubError(404, f"A file with this name doesn't exist: {missing}", "EntryNotFound") from None
        self._send_json({
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{hub.endpoint}/{repo_key(repo.kind, repo.repo_id)}/commit/{commit.oid}",
            "pullRequestUrl": None,
        })

    def _branch(self, repo: Repo, branch: str) -> None:
        store = self.server.hub.store
        with store.lock:
            if self.command == "DELETE":
                if branch not in repo.branches or branch == DEFAULT_BRANCH:
                    raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                del repo.branches[branch]
                return self._send_json({})
            if branch in repo.branches:
                return self._send_json({"error": f"Reference {branch} already exists"}, 409)
            start = self._json_body().get("startingPoint") or DEFAULT_BRANCH
            repo.branches[branch] = self._commit_for(repo, start).oid
            store._dump(repo)
        self._send_json({})

    def _tag(self, repo: Repo, revision_or_tag: str) -> None:
        store = self.server.hub.store
        with store.lock:
            if self.command == "DELETE":
                if repo.tags.pop(revision_or_tag, None) is None:
                    raise _HubError(404, f"Invalid rev id: {revision_or_tag}", "RevisionNotFound")
                return self._send_json({})
            body = self._json_body()
            tag = body.get("tag")
            if not tag:
                raise _HubError(400, "tag name missing")
            if tag in repo.tags:
                return self._send_json({"error": f"Tag {tag} already exists"}, 409)
            repo.tags[tag] = self._commit_for(repo, revision_or_tag).oid
            store._dump(repo)
        self._send_json({})

    # -- /{repo}/resolve/{revision}/{path} ---------------------------------------------------------
    def _resolve(self, path: str) -> None:
        if self.command not in {"GET", "HEAD"}:
            raise _HubError(405, f"{self.command} not allowed on resolve")
        repo_id, _, rest = path.partition("/resolve/")
        revision, _, filename = rest.partition("/")
        repo = self._repo(unquote(repo_id))
        commit = self._commit_for(repo, revision)
        filename = unquote(filename)
        blob_id = commit.files.get(filename)
        if blob_id is None:
            raise _HubError(404, f"Entry not found: {filename}", "EntryNotFound", commit.oid)
        data = self.server.hub.store.read_blob(blob_id)
        hub = self.server.hub
        status, start, end = 200, 0, len(data)
        range_header = self.headers.get("Range")
        if self.command == "GET" and hub.drop_downloads:
            hub.dropped += 1
            if range_header:  # refuse to resume: drop before any response
                return self._drop()
            end = len(data)  # announce everything, send half, drop
            self._send_file_headers(200, commit, blob_id, len(data), len(data))
            self._send_body(filename, data[: len(data) // 2])
            self.wfile.flush()
            return self._drop()
        if range_header:
            match = re.match(r"bytes=(\d*)-(\d*)$", range_header.strip())
            if match is None:
                raise _HubError(416, f"unsupported Range {range_header!r}")
            first, last = match.groups()
            if first:
                start, end = int(first), (int(last) + 1 if last else len(data))
            else:  # suffix range: last N bytes
                start, end = max(0, len(data) - int(last)), len(data)
            end = min(end, len(data))
            if start >= len(data) and len(data) > 0:
                raise _HubError(416, f"Range {range_header!r} outside a {len(data)}-byte file")
            status = 206
        self._send_file_headers(status, commit, blob_id, end - start, len(data), (start, end) if status == 206 else None)
        if self.command != "GET":
            return
        body = data[start:end]
        with hub._lock:
            cut = status == 206 and hub.drop_range_reads > 0
            hub.drop_range_reads -= cut
        if cut:  # a link that fails mid-read: half the requested bytes, then nothing
            hub.dropped += 1
            body = body[: len(body) // 2]
        self._send_body(filename, body)
        if cut:
            self.wfile.flush()
            return self._drop()
        hub.downloads[filename] = hub.downloads.get(filename, 0) + 1

    def _send_body(self, filename: str, body: bytes) -> None:
        hub = self.server.hub
        with hub._lock:
            hub.bytes_served[filename] = hub.bytes_served.get(filename, 0) + len(body)
        self.wfile.write(body)

    def _send_file_headers(self, status, commit: Commit, blob_id: str, length: int, total: int, span=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{blob_id}"')
        self.send_header("X-Repo-Commit", commit.oid)
        if span is not None:
            self.send_header("Content-Range", f"bytes {span[0]}-{span[1] - 1}/{total}")
        # Deliberately no X-Xet-* headers and no Link: xet-auth: clients must use plain HTTP.
        self.end_headers()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: HubServer


class HubServer:
    """A Hub-compatible server on ``127.0.0.1`` backed by a directory (a temp dir by default).

    Attributes tests use: ``endpoint``, ``store`` (repos, commits), ``log`` (one line per request),
    ``downloads`` (filename -> completed GETs), ``bytes_served`` (filename -> body bytes sent),
    ``drop_downloads`` / ``drop_range_reads`` (fault switches), ``dropped`` (downloads dropped so far),
    ``errors`` (server-side exceptions; a test may assert it is empty).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, token: str | None = None, lifetime_s: float = 600.0):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="physfm-hub-")) if root is None else Path(root)
        self.store = HubStore(self.root)
        self.token = token  # when set, writes (and reads of private repos) need "Authorization: Bearer <token>"
        self.lifetime_s = lifetime_s
        self.log: list[str] = []
        self.errors: list[str] = []
        self.downloads: dict[str, int] = {}
        self.bytes_served: dict[str, int] = {}
        self.drop_downloads = False
        self.drop_range_reads = 0
        self.dropped = 0
        self._httpd: _HubHTTPServer | None = None
        self._connections: set[socket.socket] = set()  # open keep-alive connections, closed by stop()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._httpd = _HubHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name="physfm-hub-server").start()
        # Bounded: stop by itself even if the test that started it never calls stop().
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if self._timer is not None:
            self._timer.cancel()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._lock:  # a stopped server must not keep answering on pooled keep-alive connections
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def head(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> str:
        """The commit id a revision points at (``repo_id`` of a dataset: ``"datasets/org/name"``)."""
        commit = self.store.repos[repo_id].resolve(revision)
        assert commit is not None, f"{repo_id}@{revision} does not exist"
        return commit.oid

    def file_bytes(self, repo_id: str, path: str, revision: str = DEFAULT_BRANCH) -> bytes:
        commit = self.store.repos[repo_id].resolve(revision)
        assert commit is not None
        return self.store.read_blob(commit.files[path])

    def env(self, hf_home: str | os.PathLike, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that talks to this server with its own cache."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_XET="1",
            TOKENIZERS_PARALLELISM="false",
            OMP_NUM_THREADS="1",
        )
        if self.token is not None:
            env["HF_TOKEN"] = self.token
        env.update(extra)
        return env


def url_for(endpoint: str, repo_id: str, revision: str, filename: str) -> str:
    return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{filename}"


@pytest.fixture
def hub_server(monkeypatch, tmp_path):
    """A running :class:`HubServer`; ``HF_ENDPOINT`` and huggingface_hub's constants point at it.

    huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HOME`` once, at import, so the fixture also
    patches the resolved constants for code running in this process. The in-process cache is
    redirected to ``tmp_path / "hf_home"``; subprocesses get their own through ``server.env()``.
    """
    from huggingface_hub import constants

    with HubServer(tmp_path / "hub-store") as server:
        hf_home = tmp_path / "hf_home"
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HOME", str(hf_home))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
        # transformers keeps one HfApi, bound to the endpoint of its first use: start afresh.
        transformers_hub = sys.modules.get("transformers.utils.hub")
        if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
            monkeypatch.setattr(transformers_hub, "_hf_api", None)
        yield server
