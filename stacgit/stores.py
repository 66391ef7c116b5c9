"""Where a publish writes: an S3 prefix (boto3, any S3-compatible endpoint) or a local folder.

A store is opened at one catalog's root (``s3://bucket/prefix/<catalog>/`` or
``file:///path/<catalog>/``) and addresses objects by a path relative to it. Every path is
checked by :func:`check_rel` before it becomes a key, so nothing is read, written or deleted
outside that root, whatever a remote manifest says.

Credentials come only from boto3's standard chain (environment, shared config, instance or
web-identity roles); this module never reads, prints or stores them. boto3 is imported when an
S3 store is opened, so ``stacgit --help`` stays fast.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from stacgit.errors import ConfigError, PublishError

META_SHA256 = "stacgit-sha256"
"""Object metadata key (``x-amz-meta-stacgit-sha256``) holding the sha256 of the object's bytes:
ETags of multipart or KMS-encrypted uploads are not MD5s (LESSONS S3-1)."""

DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
LARGE = 16 * 1024 * 1024  # bodies above this go through boto3's multipart transfer

_UNSAFE_CHAR = re.compile(r"[\x00-\x1f\\]")


class Conflict(Exception):
    """A conditional write found the object changed (HTTP 412/409)."""


def _bad_segment(framed: str) -> bool:
    """An empty, ``.`` or ``..`` segment in ``/<path>/`` (a leading ``/`` makes an empty one).
    Substring tests, not a split: a publish checks every path of the manifest."""
    return "//" in framed or "/./" in framed or "/../" in framed


def check_rel(rel: str, where: str = "") -> str:
    """``rel`` if it is a safe relative object path (no ``..``, no leading ``/``, no empty
    segment, no backslash or control character); otherwise a PublishError naming it."""
    if not isinstance(rel, str) or _UNSAFE_CHAR.search(rel) or _bad_segment(f"/{rel}/"):
        raise PublishError(f"{where or 'publish'}: unsafe object path {rel!r}: it would leave the catalog's prefix")
    return rel


@dataclass(frozen=True)
class Target:
    """A parsed ``--to``: ``s3://bucket/prefix`` or ``file:///path``."""

    scheme: str  # "s3" | "file"
    bucket: str  # s3 bucket; "" for file
    prefix: str  # key prefix without slashes at the ends, or the absolute folder

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme == "s3" and parts.netloc and not parts.query and not parts.fragment:
            prefix = parts.path.strip("/")
            if prefix:
                try:
                    check_rel(prefix, f"--to {url}")
                except PublishError as exc:
                    raise ConfigError(str(exc)) from None
            return cls("s3", parts.netloc, prefix)
        if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
            return cls("file", "", os.path.normpath(parts.path))
        raise ConfigError(f"--to {url}: expected s3://bucket[/prefix] or file:///absolute/path")

    def url(self, catalog: str = "") -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/" + "/".join(p for p in (self.prefix, catalog) if p) + ("/" if catalog or self.prefix else "")
        return "file://" + str(Path(self.prefix, catalog)) + "/"


class Store(Protocol):
    url: str

    def read(self, rel: str) -> tuple[bytes, str] | None:
        """(bytes, version tag) of an object, or None when it does not exist."""

    def put(self, rel: str, data: bytes | Path, *, content_type: str, cache_control: str, sha256: str) -> None: ...

    def put_if(self, rel: str, data: bytes, *, content_type: str, cache_control: str, sha256: str, tag: str | None) -> None:
        """Write only if the object still has version ``tag`` (None: only if it does not
        exist); :class:`Conflict` otherwise."""

    def delete(self, rels: list[str]) -> None: ...

    def list(self) -> dict[str, int]:
        """Every object under the root: path -> size."""

    def stored_sha256(self, rel: str) -> str | None:
        """The sha256 the object says it has (metadata), or None if it is missing."""


class FileStore:
    """A local mirror. Writes are atomic (temporary file + rename); the version tag of an
    object is the sha256 of its bytes; a lock file serialises conditional writes.

    Temporary files live in ``tmp_dir``, beside the catalog's folder, never inside it: a publish
    killed mid-write leaves nothing in the live tree (a web server serving the folder would
    serve it)."""

    def __init__(self, root: Path, tmp_dir: Path | None = None):
        self.root = root
        self.tmp_dir = tmp_dir or root.parent / ".stacgit-tmp"
        self.url = "file://" + str(root) + "/"

    def _path(self, rel: str) -> Path:
        return self.root / check_rel(rel, self.url)

    def read(self, rel: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(rel).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def put(self, rel: str, data: bytes | Path, *, content_type: str, cache_control: str, sha256: str) -> None:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        body = data.read_bytes() if isinstance(data, Path) else data
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix=path.name[:40] + ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def put_if(self, rel: str, data: bytes, *, content_type: str, cache_control: str, sha256: str, tag: str | None) -> None:
        import fcntl

        lock = self._path(".stacgit/publish.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            current = self.read(rel)
            if (current[1] if current else None) != tag:
                raise Conflict(rel)
            self.put(rel, data, content_type=content_type, cache_control=cache_control, sha256=sha256)

    def delete(self, rels: list[str]) -> None:
        for rel in rels:
            path = self._path(rel)
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def list(self) -> dict[str, int]:
        out = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = Path(dirpath, name)
                out[p.relative_to(self.root).as_posix()] = p.stat().st_size
        return out

    def stored_sha256(self, rel: str) -> str | None:
        got = self.read(rel)
        return got[1] if got else None


class S3Store:
    """An S3 prefix through one thread-safe boto3 client: connection pool sized for the
    upload threads, botocore's standard retry mode (exponential backoff with jitter on
    throttling, 5xx and connection errors), timeouts always set."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, concurrency: int):
        self.client = _s3_client(endpoint_url, concurrency)
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"

    def _key(self, rel: str) -> str:
        return self.prefix + check_rel(rel, self.url)

    def _fail(self, exc: Exception, action: str, rel: str = "") -> PublishError:
        return PublishError(f"{self.url}{rel}: {action} failed: {_describe(exc)}")

    def read(self, rel: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(rel))
            return resp["Body"].read(), resp["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, "GET", rel) from None
        except BotoCoreError as exc:
            raise self._fail(exc, "GET", rel) from None

    def _args(self, content_type: str, cache_control: str, sha256: str) -> dict:
        return {"ContentType": content_type, "CacheControl": cache_control, "Metadata": {META_SHA256: sha256}}

    def put(self, rel: str, data: bytes | Path, *, content_type: str, cache_control: str, sha256: str) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        key, args = self._key(rel), self._args(content_type, cache_control, sha256)
        try:
            if isinstance(data, Path) and data.stat().st_size > LARGE:
                from boto3.s3.transfer import TransferConfig

                self.client.upload_file(str(data), self.bucket, key, ExtraArgs=args, Config=TransferConfig(use_threads=False, multipart_threshold=LARGE, multipart_chunksize=LARGE))
            else:
                body = data.read_bytes() if isinstance(data, Path) else data
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **args)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:  # the last: boto3's multipart transfer
            raise self._fail(exc, "PUT", rel) from None

    def put_if(self, rel: str, data: bytes, *, content_type: str, cache_control: str, sha256: str, tag: str | None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        cond = {"IfMatch": tag} if tag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data, **cond, **self._args(content_type, cache_control, sha256))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise Conflict(rel) from None
            if code in ("NotImplemented", "501"):  # a store without conditional writes
                return self.put(rel, data, content_type=content_type, cache_control=cache_control, sha256=sha256)
            raise self._fail(exc, "conditional PUT", rel) from None
        except BotoCoreError as exc:
            raise self._fail(exc, "conditional PUT", rel) from None

    def delete(self, rels: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for i in range(0, len(rels), DELETE_BATCH):
            batch = rels[i : i + DELETE_BATCH]
            try:
                resp = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(r)} for r in batch], "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise self._fail(exc, f"DeleteObjects ({len(batch)} keys)", batch[0]) from None
            errors = resp.get("Errors") or []
            if errors:
                e = errors[0]
                raise PublishError(f"s3://{self.bucket}/{e.get('Key')}: delete failed: {e.get('Code')}: {e.get('Message')} ({len(errors)} keys failed)")

    def list(self) -> dict[str, int]:
        from botocore.exceptions import BotoCoreError, ClientError

        out = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", ()):
                    out[obj["Key"][len(self.prefix) :]] = obj["Size"]
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, "LIST") from None
        return out

    def stored_sha256(self, rel: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(exc, "HEAD", rel) from None
        except BotoCoreError as exc:
            raise self._fail(exc, "HEAD", rel) from None
        return resp.get("Metadata", {}).get(META_SHA256, "")


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint_url: str | None, concurrency: int):
    """One client per endpoint for the whole run (they are thread-safe and slow to create)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 10, "mode": "standard"},
        max_pool_connections=max(10, concurrency),
        connect_timeout=10,
        read_timeout=120,
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def _describe(exc: Exception) -> str:
    """A one-line reason from a botocore error (never request headers or credentials)."""
    err = getattr(exc, "response", {}).get("Error") if hasattr(exc, "response") else None
    if err:
        return f"{err.get('Code')}: {err.get('Message') or ''}".rstrip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def open_store(target: Target, catalog: str, endpoint_url: str | None = None, concurrency: int = 16) -> Store:
    """The store at one catalog's root under ``target``."""
    if target.scheme == "file":
        return FileStore(Path(target.prefix, check_rel(catalog)))
    return S3Store(target.bucket, "/".join(p for p in (target.prefix, check_rel(catalog)) if p), endpoint_url, concurrency)


__all__ = ["Conflict", "FileStore", "META_SHA256", "S3Store", "Store", "Target", "check_rel", "open_store"]
