"""The model store: checkpoint folders under a local root (MODEL_STORE) and, where MODEL_STORE_URL
is set, the same folders at the same relative paths in an object store (any URL fsspec knows:
s3://, gs://, az://, file://, …), of which the local root is then this host's cache.

A folder in the object store counts once its manifest (MANIFEST, written last) is there: it lists
every file with its size and, where known, the checkpoint's content hash. A folder without one
(an upload cut off, or one still running) is never downloaded. A download goes into a temporary
folder beside its destination and is renamed into place when complete, under a lock file, so two
processes fetching one checkpoint leave one intact copy and neither ever reads half of one.

No Django here: the gpu workers (training.registry.services) and a Ray job's processes
(training.ml.launch) share these functions; the latter learn the URL from their environment
(ModelStore.environment, read back by ModelStore.from_environment).
"""

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

MANIFEST = ".yushan-complete.json"
ENV_URL = "YUSHAN_MODEL_STORE_URL"  # a Ray job's processes: the object store
ENV_ORIGIN = "YUSHAN_MODEL_STORE"  # and the MODEL_STORE of the worker that wrote the job's paths


class ModelStoreError(OSError):
    """The object store cannot be used: unreachable, refusing, or holding an incomplete folder."""


class CheckpointMissing(ModelStoreError, FileNotFoundError):
    """A checkpoint that is neither in the local store nor complete in the object store."""


@dataclass
class ModelStore:
    root: Path  # this host's folder: the store itself, or its cache of `url`
    url: str = ""  # the object store; empty: the local folder is all there is
    origin: Path | None = None  # another host's root, under which the paths handed to us were written

    @classmethod
    def from_environment(cls) -> "ModelStore | None":
        """The store of a Ray job's process (None without an object store). Its paths were written
        under the gpu worker's MODEL_STORE; this node keeps its copies under its own MODEL_STORE
        where one is set, else at the same path as the gpu worker."""
        url = os.environ.get(ENV_URL, "")
        if not url:
            return None
        origin = Path(os.environ[ENV_ORIGIN])
        return cls(root=Path(os.environ.get("MODEL_STORE") or origin), url=url, origin=origin)

    def environment(self) -> dict[str, str]:
        """What from_environment reads, for the processes of a job submitted from this host."""
        return {ENV_URL: self.url, ENV_ORIGIN: str(self.root)}

    # --- paths -------------------------------------------------------------------------------

    def relative(self, path: str | os.PathLike) -> str:
        """`path`'s place in the store, as a POSIX path relative to its root."""
        path = Path(path)
        for base in (self.origin, self.root):
            if base is not None and path.is_relative_to(base):
                return path.relative_to(base).as_posix()
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        raise ValueError(f"{path} is not inside the model store {self.root}")

    def local(self, path: str | os.PathLike) -> Path:
        """Where `path` (written here, or under the origin's root) lies on this host."""
        return self.root / self.relative(path)

    def location(self, path: str | os.PathLike) -> str:
        """`path`'s URL in the object store."""
        return f"{self.url.rstrip('/')}/{self.relative(path)}"

    # --- checkpoint folders ------------------------------------------------------------------

    def fetch(self, path: str | os.PathLike) -> Path:
        """The checkpoint folder at `path` on this host, downloaded from the object store first
        when it is not here. Raises CheckpointMissing when it is nowhere."""
        local = self.local(path)
        if local.is_dir():
            return local
        if not self.url:
            raise CheckpointMissing(
                f"The checkpoint {self.relative(path)} is missing from the model store {self.root}."
            )
        local.parent.mkdir(parents=True, exist_ok=True)
        with _locked(local):
            if not local.is_dir():  # else another process fetched it while this one waited
                self._download(path, self.manifest(path, required=True), local)
        return local

    def published(self, path: str | os.PathLike) -> bool:
        """Whether the object store holds the complete folder (False without an object store)."""
        return bool(self.url) and self.manifest(path) is not None

    def manifest(self, path: str | os.PathLike, *, required: bool = False) -> dict | None:
        """The folder's manifest in the object store; None when it has none, unless `required`:
        then CheckpointMissing, or ModelStoreError for a folder without one (half uploaded)."""
        fs, remote = self._remote(path)
        with self._reaching(f"read {self.location(path)}"):
            try:
                return json.loads(fs.cat_file(f"{remote}/{MANIFEST}"))
            except (FileNotFoundError, json.JSONDecodeError):  # none, or one being written
                if not required:
                    return None
            fs.invalidate_cache(remote)
            incomplete = fs.exists(remote)
        if incomplete:
            raise ModelStoreError(
                f"The checkpoint {self.location(path)} is incomplete (it has no {MANIFEST}): its upload was "
                "cut off or is still running, so it is not used. Run again what wrote it."
            )
        raise CheckpointMissing(
            f"The checkpoint {self.relative(path)} is neither in the model store {self.root} nor in {self.url}."
        )

    def publish(self, path: str | os.PathLike, *, content_hash: str | None = None) -> dict:
        """Upload the folder at `path` to the object store, replacing what is there. Its manifest
        goes first and comes back last, so the folder is never taken as complete while it changes."""
        local = self.local(path)
        if not local.is_dir():
            raise CheckpointMissing(
                f"The checkpoint {self.relative(path)} is missing from {self.root}: nothing to upload."
            )
        files = {
            file.relative_to(local).as_posix(): file.stat().st_size
            for file in sorted(local.rglob("*"))
            if file.is_file()
        }
        manifest = {"files": files, "content_hash": content_hash, "uploaded_at": time.time()}
        fs, remote = self._remote(path)
        with self._reaching(f"upload to {self.location(path)}"):
            self._remove(fs, remote)
            for name in files:
                fs.makedirs(posixpath.dirname(f"{remote}/{name}"), exist_ok=True)
                fs.put_file(str(local / name), f"{remote}/{name}")
            fs.pipe_file(f"{remote}/{MANIFEST}", json.dumps(manifest).encode())
        return manifest

    def unpublish(self, path: str | os.PathLike) -> None:
        """Remove the folder from the object store (its manifest first); nothing if it is not there."""
        fs, remote = self._remote(path)
        with self._reaching(f"remove {self.location(path)}"):
            self._remove(fs, remote)

    def _download(self, path, manifest: dict, local: Path) -> None:
        fs, remote = self._remote(path)
        temporary = Path(tempfile.mkdtemp(prefix=f".{local.name}.", suffix=".download", dir=local.parent))
        try:
            with self._reaching(f"download {self.location(path)}"):
                for name, size in manifest["files"].items():
                    target = temporary / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(f"{remote}/{name}", str(target))
                    if target.stat().st_size != size:
                        raise ModelStoreError(
                            f"{self.location(path)}/{name} has {target.stat().st_size} bytes, its manifest says {size}."
                        )
            try:
                temporary.rename(local)
            except OSError:
                if not local.is_dir():  # else a process that held no lock (another host) put it there
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    @staticmethod
    def _remove(fs, remote: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{remote}/{MANIFEST}")
        fs.invalidate_cache(remote)
        if fs.exists(remote):
            fs.rm(remote, recursive=True)

    # --- single files (a Ray job's inputs, progress and outcome) ----------------------------------

    def put_file(self, path: str | os.PathLike) -> None:
        """Upload one file, replacing the one there."""
        fs, remote = self._remote(path)
        with self._reaching(f"upload to {self.location(path)}"):
            fs.makedirs(posixpath.dirname(remote), exist_ok=True)
            fs.put_file(str(self.local(path)), remote)

    def get_file(self, path: str | os.PathLike, *, into: Path | None = None, missing_ok: bool = False) -> Path | None:
        """Download one file to its local place (or `into`), replacing it whole; None when it is not
        there and `missing_ok`."""
        fs, remote = self._remote(path)
        target = into or self.local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        try:
            with self._reaching(f"download {self.location(path)}"):
                try:
                    fs.get_file(remote, temporary)
                except FileNotFoundError:
                    if missing_ok:
                        return None
                    raise CheckpointMissing(f"{self.location(path)} is not in the model store.") from None
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return target

    def get_files(self, folder: str | os.PathLike, pattern: str) -> list[Path]:
        """Download the files of `folder` whose names match `pattern` (a glob); their local paths."""
        fs, remote = self._remote(folder)
        with self._reaching(f"list {self.location(folder)}"):
            fs.invalidate_cache(remote)
            names = [posixpath.basename(found) for found in fs.glob(f"{remote}/{pattern}")]
        return [self.get_file(Path(folder) / name) for name in names]

    def arrow_location(self, path: str | os.PathLike) -> tuple[str, object]:
        """(path, pyarrow filesystem) of `path` in the object store, for Ray Train's storage."""
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, remote = self._remote(path)
        return remote, PyFileSystem(FSSpecHandler(fs))

    # --- the object store ------------------------------------------------------------------------

    @cached_property
    def _filesystem(self):
        """(fsspec filesystem, the URL's path in it)."""
        import fsspec

        try:
            fs, base = fsspec.core.url_to_fs(self.url)
        except Exception as error:  # an unknown protocol, its package missing (s3fs, gcsfs): say so
            raise ModelStoreError(f"MODEL_STORE_URL {self.url} cannot be used: {error}") from None
        return fs, base.rstrip("/")

    def _remote(self, path) -> tuple[object, str]:
        fs, base = self._filesystem
        return fs, f"{base}/{self.relative(path)}"

    @contextlib.contextmanager
    def _reaching(self, what: str):
        """Any failure of the object store's client (its own exception classes differ from one
        protocol to the next) as one ModelStoreError that says what could not be done, and where."""
        try:
            yield
        except ModelStoreError:
            raise
        except Exception as error:
            raise ModelStoreError(f"Could not {what}: {type(error).__name__}: {error}") from error


@contextlib.contextmanager
def _locked(folder: Path):
    """An exclusive lock on a file beside `folder` while this process fetches it: a second process
    waits, then finds the folder there. Without fcntl (Windows) there is no lock, and the rename
    alone keeps the copy intact."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with (folder.parent / f".{folder.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
