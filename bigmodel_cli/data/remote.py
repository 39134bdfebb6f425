"""Data on object storage and the web, through fsspec: ``s3://``, ``gs://``, ``hf://``,
``https://``.

Every place that takes a data path hands a URL here and gets a local file back
(:func:`fetch`): a copy in ``~/.cache/bigmodel/remote/`` (``BIGMODEL_REMOTE_CACHE``)
named by the URL and the object's identity (its ETag, generation or blob id,
never its mtime), so the same object is downloaded once and a changed one again.
Each copy has a ``.source.json`` beside it (:func:`origin`): the streaming block
cache keys on the URL and identity from it, not on the copy's path or time.

Credentials and endpoints come from each platform's own environment, as its
library reads them: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``...
(s3fs), ``GOOGLE_APPLICATION_CREDENTIALS`` (gcsfs), ``HF_TOKEN`` (huggingface_hub).
The libraries are the ``bigmodel[cloud]`` extra; a missing one is one line with
the install command. A missing bucket or object, a denied access and a timeout
are each one line naming the URL.

Outputs (``predict --output s3://...``, ``export --output s3://...``) are written
locally and then uploaded (:func:`upload`); ``http(s)://`` is read-only.

Example::

    local = fetch("s3://bucket/train.csv")           # a Path in the cache
    shards = [fetch(u) for u in expand("s3://bucket/shards/*.parquet")]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import BigmodelError, DataError, EnvironmentProblem

# scheme -> the package that reads it (all in the bigmodel[cloud] extra)
SCHEMES = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "hf": "huggingface_hub",
    "http": "aiohttp",
    "https": "aiohttp",
}
READ_ONLY = ("http", "https")
IDENTITY_KEYS = ("ETag", "etag", "generation", "blob_id", "sha256", "md5Hash")
SIDECAR = ".source.json"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 10, 60  # BIGMODEL_REMOTE_TIMEOUT sets both (seconds)


def scheme(spec: Any) -> str | None:
    m = _URL.match(spec) if isinstance(spec, str) else None
    return m.group(1).lower() if m else None


def is_url(spec: Any) -> bool:
    """Whether a data path is a URL (any scheme but file://, which is a local path)."""
    s = scheme(spec)
    return s is not None and s != "file"


def local_path(spec: str) -> str:
    """file:///x -> /x; anything else unchanged."""
    return spec[len("file://") :] if scheme(spec) == "file" else spec


def _fs(url: str):
    s = scheme(url)
    if s not in SCHEMES:
        raise DataError(
            f"{url}: bigmodel does not read {s}:// URLs",
            hint="use s3://, gs://, hf:// or https://, or a local path",
        )
    try:
        import fsspec

        options: dict[str, Any] = {}
        limit = (
            float(os.environ["BIGMODEL_REMOTE_TIMEOUT"])
            if os.environ.get("BIGMODEL_REMOTE_TIMEOUT")
            else None
        )
        if s == "s3":
            options["config_kwargs"] = {
                "connect_timeout": limit or CONNECT_TIMEOUT_S,
                "read_timeout": limit or READ_TIMEOUT_S,
                "retries": {"max_attempts": 1 if limit else 3},
            }
        elif s in READ_ONLY and limit:
            import aiohttp

            options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=limit)}
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        raise EnvironmentProblem(
            f"{url}: reading {s}:// needs the {SCHEMES[s]} package ({e.name or e} is missing)",
            hint="pip install 'bigmodel[cloud]'",
        ) from None
    except Exception as e:  # a malformed URL, an unreadable credentials file
        raise failure(e, url) from None


def failure(e: BaseException, url: str) -> BigmodelError:
    """One line naming the URL for what went wrong talking to the store."""
    name = type(e).__name__
    text = str(e).strip().splitlines()[0] if str(e).strip() else name
    code = ""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        code = str((response.get("Error") or {}).get("Code") or "")
    if isinstance(e, BigmodelError):
        return e
    if isinstance(e, FileNotFoundError) or code in ("NoSuchBucket", "NoSuchKey", "404"):
        what = (
            "the bucket does not exist"
            if "bucket" in text.lower() or code == "NoSuchBucket"
            else "no such object"
        )
        return DataError(
            f"{url}: {what}",
            hint="check the bucket and key (and AWS_ENDPOINT_URL for a store other than AWS)",
        )
    if (
        isinstance(e, PermissionError)
        or code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch")
        or "403" in text
    ):
        return DataError(
            f"{url}: access denied ({code or text})",
            hint="check the credentials in the environment (AWS_ACCESS_KEY_ID / AWS_PROFILE, "
            "GOOGLE_APPLICATION_CREDENTIALS, HF_TOKEN)",
        )
    if "NoCredentials" in name or "credentials" in text.lower() and "not" in text.lower():
        return DataError(
            f"{url}: no credentials found",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
            "GOOGLE_APPLICATION_CREDENTIALS or HF_TOKEN",
        )
    if "Timeout" in name or isinstance(e, TimeoutError) or "timed out" in text.lower():
        return DataError(
            f"{url}: timed out ({text})",
            hint="is the endpoint reachable? (AWS_ENDPOINT_URL for a store other than AWS)",
        )
    if "EndpointConnectionError" in name or "Connect" in name or isinstance(e, ConnectionError):
        return DataError(
            f"{url}: cannot connect ({text})",
            hint="is the endpoint reachable? (AWS_ENDPOINT_URL for a store other than AWS)",
        )
    return DataError(f"{url}: {name}: {text}")


def _join(url: str, path: str) -> str:
    return f"{scheme(url)}://{path.lstrip('/')}" if scheme(url) not in READ_ONLY else path


def expand(url: str, role: str = "train", keep: Any = None) -> list[str]:
    """The objects a URL names: a glob's matches, a folder's files (a URL ending
    in /; those ``keep(name)`` accepts), or the one object; sorted by name."""
    fs, path = _fs(url)
    try:
        fs.invalidate_cache()
        if any(ch in path for ch in "*?["):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise DataError(
                    f"data.{role}: '{url}' matches no object",
                    hint="check the pattern and the bucket",
                )
            return [_join(url, p) for p in found]
        if url.endswith("/"):
            found = sorted(
                p
                for p in fs.ls(path, detail=False)
                if fs.isfile(p) and (keep is None or keep(Path(p)))
            )
            if not found:
                raise DataError(f"data.{role}: {url} holds no csv, tsv, parquet or jsonl object")
            return [_join(url, p) for p in found]
    except BigmodelError:
        raise
    except Exception as e:
        raise failure(e, url) from None
    return [url]


def identity(info: dict[str, Any]) -> str:
    """What names this version of the object: ETag, generation or blob id; size
    and modification time only where the store gives neither (a plain web server)."""
    for k in IDENTITY_KEYS:
        if info.get(k):
            return f"{k}:{str(info[k]).strip(chr(34))}"
    modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or ""
    return f"size:{info.get('size')}:modified:{modified}"


def cache_root() -> Path:
    return Path(
        os.environ.get("BIGMODEL_REMOTE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bigmodel" / "remote"
    )


def fetch(url: str) -> Path:
    """A local copy of the object, downloaded unless the cache holds this version."""
    fs, path = _fs(url)
    try:
        fs.invalidate_cache(
            path
        )  # this version's ETag, not a listing cached earlier in this process
        info = fs.info(path)
    except Exception as e:
        raise failure(e, url) from None
    if info.get("type") == "directory":
        raise DataError(
            f"{url} is a folder, not an object",
            hint=f"name the files: {url.rstrip('/')}/*.csv, or end the URL with / for all its "
            "tables",
        )
    ident = identity(info)
    key = hashlib.sha256(f"{url}\0{ident}".encode()).hexdigest()[:24]
    name = Path(path).name or "object"
    folder = cache_root() / key
    dst = folder / name
    if dst.is_file() and origin(dst) is not None:
        return dst
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.part"
    try:
        fs.get_file(path, str(tmp))
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise failure(e, url) from None
    os.replace(tmp, dst)
    (folder / (name + SIDECAR)).write_text(
        json.dumps({"url": url, "identity": ident, "size": info.get("size")})
    )
    return dst


def origin(path: Path) -> dict[str, Any] | None:
    """The URL and identity a cached copy came from; None for any other file."""
    side = Path(path).with_name(Path(path).name + SIDECAR)
    try:
        return json.loads(side.read_text()) if side.is_file() else None
    except (OSError, ValueError):
        return None


def shown(path: Path | str) -> str:
    """A cached copy's URL (for messages); any other path as it is."""
    o = origin(Path(path)) if not is_url(str(path)) else None
    return o["url"] if o else str(path)


def exists(url: str) -> bool:
    fs, path = _fs(url)
    try:
        return bool(fs.exists(path))
    except Exception as e:
        raise failure(e, url) from None


def upload(local: Path, url: str) -> None:
    """Copy a local file or folder (a SavedModel) to the URL."""
    s = scheme(url)
    if s in READ_ONLY:
        raise DataError(
            f"{url}: {s}:// is read-only", hint="write to s3://, gs:// or hf://, or a local path"
        )
    fs, path = _fs(url)
    try:
        if Path(local).is_dir():
            fs.put(str(local).rstrip("/") + "/", path.rstrip("/"), recursive=True)
        else:
            fs.put_file(str(local), path)
    except Exception as e:
        raise failure(e, url) from None


@contextlib.contextmanager
def written_then_uploaded(url: str, force: bool):
    """A local path to write an output to; on success it is uploaded to the URL
    (a file, or a folder such as a SavedModel). predict and export both use it."""
    import shutil
    import tempfile

    s = scheme(url)
    if s in READ_ONLY:
        raise DataError(
            f"{url}: {s}:// is read-only", hint="write to s3://, gs:// or hf://, or a local path"
        )
    if not force and exists(url):
        from bigmodel_cli.errors import PathError

        raise PathError(f"output {url} exists already", hint="pass --force to replace it")
    tmp = Path(tempfile.mkdtemp(prefix="bigmodel-out-"))
    local = tmp / (url.rstrip("/").rsplit("/", 1)[-1] or "output")
    try:
        yield local
        upload(local, url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
