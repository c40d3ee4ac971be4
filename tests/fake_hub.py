"""A loopback fake of the Hugging Face Hub, enough for `hf_hub_download` and `snapshot_download`.

Serves, on 127.0.0.1 only, the endpoints huggingface_hub 2.x calls (read in its source: `file_download.py`,
`_snapshot_download.py`, `hf_api.py`):

* ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length`` (``GET`` honours a ``Range: bytes=N-`` header, used to resume a download);
* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{revision}``: ``{"id", "sha", "siblings"}``;
* ``GET /api/models/{repo}/tree/{revision}[/{path}]``: the file listing (``recursive`` honoured);
* the same for dataset repos (``add_repo(..., repo_type="dataset")``): ``/datasets/{repo}/resolve/...`` and
  ``/api/datasets/...``.

Errors carry the ``X-Error-Code`` huggingface_hub maps to its exceptions: ``RepoNotFound`` (401, like the Hub),
``RevisionNotFound`` and ``EntryNotFound`` (404). The request loop is bounded (``max_requests``) and stops on exit.

```python
with FakeHub() as hub:
    commit = hub.add_repo("owner/name", folder)           # every file of folder, one commit on "main"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)   # or HF_ENDPOINT in a subprocess
```
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<kind>datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_INFO = re.compile(r"^/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<revision>[^/]+))?$")
_TREE = re.compile(r"^/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+)/tree/(?P<revision>[^/]+)(?:/(?P<path>.+))?$")


def _key(repo_id: str, repo_type: str) -> str:
    """Dataset repos are stored under ``datasets/<owner>/<name>``, models under their id."""
    return f"datasets/{repo_id}" if repo_type == "dataset" else repo_id


class _Repo:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, bytes]] = {}
        self.refs: dict[str, str] = {}

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 imitating the Hub's download endpoints.

    Attributes:
        url: ``http://127.0.0.1:<port>``, to set as ``HF_ENDPOINT``.
        requests: ``(method, path)`` of every request served, for assertions.
    """

    def __init__(self, max_requests: int = 2000) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.max_requests = max_requests
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- content
    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", repo_type: str = "model") -> str:
        """Add a commit holding ``files`` (path -> bytes) and point ``branch`` at it; returns the commit sha."""
        repo = self.repos.setdefault(_key(repo_id, repo_type), _Repo())
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        digest.update(str(len(repo.commits)).encode())
        commit = digest.hexdigest()
        repo.commits[commit] = dict(files)
        repo.refs[branch] = commit
        return commit

    def add_repo(self, repo_id: str, folder: str | Path, branch: str = "main", repo_type: str = "model") -> str:
        """Every file under ``folder`` as one commit of ``repo_id`` on ``branch``; returns the commit sha."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_commit(repo_id, files, branch, repo_type)

    # ---------------------------------------------------------------- server
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not started; use it as a context manager.")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.timeout = 0.05
        self._thread = threading.Thread(target=self._serve, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._server is not None
        handled = 0
        while not self._stop.is_set() and handled < self.max_requests:
            self._server.handle_request()  # returns after one request or `timeout` seconds
            handled = len(self.requests)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.server_close()


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, head: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit is not None:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

    def _route(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        hub = self.fake_hub
        with hub._lock:
            hub.requests.append((self.command, self.path))
        for pattern, handler in ((_RESOLVE, self._resolve), (_TREE, self._tree), (_INFO, self._info)):
            match = pattern.match(path)
            if match is not None:
                dataset = match["kind"] in ("datasets/", "datasets")
                repo = hub.repos.get(_key(match["repo"], "dataset" if dataset else "model"))
                if repo is None:
                    return self._error(401, "RepoNotFound", "Repository not found", head)
                commit = repo.resolve(match["revision"] or "main")
                if commit is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {match['revision']}", head)
                return handler(repo, commit, match.groupdict().get("path"), query, head)
        self._send(404, b"not found", head=head)

    def _resolve(self, repo: _Repo, commit: str, path: str, query: dict, head: bool) -> None:
        files = repo.commits[commit]
        if path not in files:
            return self._error(404, "EntryNotFound", f"{path} does not exist", head, commit=commit)
        data = files[path]
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{_etag(data)}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status = 200
        ranged = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if ranged and not head:
            start = int(ranged.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data, status = data[start:], 206
        headers["Content-Length"] = str(len(data))
        self._send(status, data, headers, head=head)

    def _info(self, repo: _Repo, commit: str, path: None, query: dict, head: bool) -> None:
        repo_id = next(name for name, value in self.fake_hub.repos.items() if value is repo).removeprefix("datasets/")
        body = {
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": False,
            "siblings": [{"rfilename": name} for name in sorted(repo.commits[commit])],
        }
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head=head)

    def _tree(self, repo: _Repo, commit: str, path: str | None, query: dict, head: bool) -> None:
        files = repo.commits[commit]
        prefix = f"{path.strip('/')}/" if path else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries: dict[str, dict] = {}
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folder = prefix + rest.split("/")[0]
                entries[folder] = {"type": "directory", "path": folder, "oid": _etag(folder.encode())[:40]}
                continue
            if recursive:  # folders are listed too, as the Hub does
                parts = rest.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folder = prefix + "/".join(parts[:depth])
                    entries[folder] = {"type": "directory", "path": folder, "oid": _etag(folder.encode())[:40]}
            data = files[name]
            entries[name] = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        if prefix and not entries:
            return self._error(404, "EntryNotFound", f"{path} does not exist", head, commit=commit)
        self._send(200, json.dumps(list(entries.values())).encode(), {"Content-Type": "application/json"}, head=head)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)


def write_hub_cache(cache_dir: str | Path, repo_id: str, folder: str | Path, commit: str | None = None,
                    branch: str = "main") -> str:
    """Copy ``folder`` into a Hugging Face cache as the snapshot ``commit`` of model ``repo_id`` on ``branch``.

    Writes the layout huggingface_hub reads offline: ``models--owner--name/blobs/<etag>``,
    ``snapshots/<commit>/<path>`` (a relative symlink to the blob, or a copy where links are unavailable) and
    ``refs/<branch>`` holding the commit. Returns the commit sha.
    """
    import os
    import shutil

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if commit is None:
        digest = hashlib.sha1(repo_id.encode())
        for file in files:
            digest.update(file.relative_to(folder).as_posix().encode() + hashlib.sha256(file.read_bytes()).digest())
        commit = digest.hexdigest()
    storage = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    for file in files:
        relative = file.relative_to(folder)
        blob = storage / "blobs" / _etag(file.read_bytes())
        if not blob.exists():
            shutil.copyfile(file, blob)
        target = storage / "snapshots" / commit / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(os.path.relpath(blob, target.parent), target)
        except OSError:
            shutil.copyfile(blob, target)
    (storage / "refs" / branch).write_text(commit)
    return commit
