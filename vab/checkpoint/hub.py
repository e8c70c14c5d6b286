"""Model directories by Hugging Face Hub id, and model directories uploaded to the Hub.

Wherever a model directory is read, ``org/name`` or ``org/name@revision`` (a branch, tag
or commit) may stand in for it: :func:`resolve_model_dir` turns it into the local folder
of a cached snapshot, and the loaders then read that folder exactly as a directory on
disk (YAML and safetensors only, validated; nothing is unpickled).

- A local path always wins: when a file or folder of that spelling exists, it is used
  and the Hub is never asked.
- A revision is a name (a branch, a tag, ``refs/pr/1``, a commit hash), never a path:
  ``..``, a leading ``/`` or ``-`` and characters outside git's names are refused in one
  line (:func:`check_revision`), and the snapshot folder found must lie inside the cache's
  folder of that repository, so no spelling reads a folder elsewhere on the disk.
- Only the files a model directory may hold (:data:`vab.checkpoint.directory.MODEL_FILES`) are
  fetched (``allow_patterns``); whatever else a repository holds is never downloaded.
- huggingface_hub's own settings apply: ``HF_HUB_OFFLINE=1`` (or ``local_files_only``)
  reads the cache only; the cache is ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``; ``HF_TOKEN`` or ``hf auth login`` for private models.
  huggingface_hub reads these variables when it is first imported.

Uploading (:func:`plan_upload`, :func:`upload`) sends the same files, from a staging
folder of hard links, so what is uploaded is the set of files that was checked even if
the directory changes meanwhile, and a card can be added without writing into it.  Only
regular files inside the folder are sent: a symbolic link (a ``README.md`` pointing at a
private file, say) is skipped, never followed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vab.checkpoint.directory import MODEL_FILES, REQUIRED_FILES
from vab.errors import VabError
from vab.filenames import CARD_FILE

#: ``org/name``: letters, digits, ``-``, ``_`` and ``.`` on both sides of one slash
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
#: a revision: names of letters, digits, ``.``, ``_`` and ``-`` (each starting with a letter, a
#: digit or ``_``) joined by single slashes, as git names branches and tags (``v1``,
#: ``refs/pr/1``, a commit hash)
_REVISION = re.compile(r"[A-Za-z0-9_][\w.-]{0,127}(/[A-Za-z0-9_][\w.-]{0,127}){0,7}")


@dataclass(frozen=True)
class HubId:
    """A model on the Hub: ``repo_id`` (``org/name``) and an optional ``revision``."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def check_revision(revision: str, where: str) -> str:
    """`revision` if it is a branch, tag or commit name (:data:`_REVISION`, no ``..``, no
    ``.lock``); a one-line VabError naming `where` otherwise.  A revision is looked up as a
    name in the Hub's cache, so anything path-like would read a folder outside it."""
    parts = revision.split("/")
    if (not _REVISION.fullmatch(revision) or ".." in revision
            or any(part.endswith((".", ".lock")) for part in parts)):
        raise VabError(f"{where}: revision {revision!r} is not a branch, tag or commit name (letters, digits, "
                       "'.', '_' and '-', names joined by '/'; never '..' or a path)")
    return revision


def parse_hub_id(spec: str | os.PathLike) -> HubId | None:
    """The Hub id `spec` spells (``org/name`` or ``org/name@revision``), else None; a valid
    ``org/name`` with a revision that is not a name is a VabError (:func:`check_revision`).

    Only the spelling counts here; :func:`hub_id` also asks whether a local path wins."""
    text = os.fspath(spec)
    repo_id, at, revision = text.partition("@")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", "-")):
        return None
    if at and not revision:
        return None
    return HubId(repo_id, check_revision(revision, text) if at else None)


def hub_id(source: str | os.PathLike) -> HubId | None:
    """The Hub id `source` names, or None when it is a local path (one that exists always
    wins) or no id at all."""
    if Path(source).expanduser().exists():
        return None
    return parse_hub_id(source)


def resolve_model_dir(source: str | os.PathLike, *, local_files_only: bool = False) -> Path:
    """The local folder of a model directory given as a path or a Hub id.

    A path comes back as given (``~`` expanded; whether it holds a model is for the loader
    to say).  An id is fetched into the Hugging Face cache (only :data:`MODEL_FILES`) or,
    offline (``HF_HUB_OFFLINE=1`` or `local_files_only`), found there; its snapshot folder
    is returned.  Raises VabError naming the id and what is missing."""
    found = hub_id(source)
    if found is None:
        return Path(source).expanduser()
    return _snapshot(found, local_files_only)


def _snapshot(model: HubId, local_files_only: bool) -> Path:
    # huggingface_hub only when an id is asked for: it costs ~0.3 s and reads the HF_* variables on import
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (  # lazy, as above
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(local_files_only or constants.HF_HUB_OFFLINE)
    try:
        folder = Path(snapshot_download(
            model.repo_id, revision=model.revision, allow_patterns=list(MODEL_FILES),
            local_files_only=offline, library_name="vab",
        ))
    except RevisionNotFoundError:
        raise VabError(f"{model}: the Hugging Face Hub repository {model.repo_id} has no revision "
                       f"{model.revision!r}") from None
    except RepositoryNotFoundError:  # also gated and private repositories without access
        raise VabError(f"{model}: no such local directory, and no model {model.repo_id} on the Hugging Face Hub "
                       "(a private or gated one needs `hf auth login` or HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise VabError(_not_cached(model, offline)) from None
    except HFValidationError as exc:
        raise VabError(f"{model}: not a valid Hugging Face Hub id ({_first_line(exc)})") from None
    except (HfHubHTTPError, OSError) as exc:
        raise VabError(f"{model}: cannot download from the Hugging Face Hub ({_first_line(exc)})") from None
    _check_inside_cache(model, folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise VabError(
            f"{model}: the repository has no {' and no '.join(missing)}, so it is not a vab model directory "
            f"(it holds: {', '.join(held) or 'none of the model files'})"
        )
    return folder


def _check_inside_cache(model: HubId, folder: Path) -> None:
    """VabError unless `folder` (what huggingface_hub returned) lies in the cache's snapshots of
    `model`'s repository: a second guard, beside :func:`check_revision`, against a revision
    read as a path."""
    from huggingface_hub import constants  # lazy, as in _snapshot
    from huggingface_hub.file_download import repo_folder_name  # lazy, as in _snapshot

    snapshots = (Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=model.repo_id, repo_type="model")
                 / "snapshots").resolve()
    if not folder.resolve().is_relative_to(snapshots):
        raise VabError(f"{model}: the Hugging Face cache answered with {folder}, outside {snapshots}; not used")


def _not_cached(model: HubId, offline: bool) -> str:
    """Why an id is not in the cache: the model is absent, or only the asked revision is."""
    from huggingface_hub import constants  # lazy, as in _snapshot
    from huggingface_hub.file_download import repo_folder_name  # lazy, as in _snapshot

    cache = Path(constants.HF_HUB_CACHE)
    why = ("offline: HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "offline: local_files_only") if offline \
        else "the Hugging Face Hub could not be reached"
    storage = cache / repo_folder_name(repo_id=model.repo_id, repo_type="model")
    if not storage.is_dir():
        return f"{model}: no such local directory, and the model is not in the Hugging Face cache {cache} ({why})"
    revision = model.revision or "main"
    refs = storage / "refs"
    cached = sorted(str(p.relative_to(refs)) for p in refs.rglob("*") if p.is_file()) if refs.is_dir() else []
    if (refs / revision).is_file() or (storage / "snapshots" / revision).is_dir():
        return f"{model}: the cached copy in {cache} is incomplete ({why}); connect once to complete it"
    return (f"{model}: revision {revision!r} is not in the Hugging Face cache {cache} "
            f"(cached: {', '.join(cached) or 'no revision'}; {why})")


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of whichever HTTP client huggingface_hub uses (httpx's are not OSErrors)."""
    errors: list[type[BaseException]] = [OSError]
    for client in ("httpx", "httpx2"):  # whichever is installed; neither is a dependency of ours
        try:
            errors.append(importlib.import_module(client).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------------- uploading
@dataclass
class UploadPlan:
    """What :func:`upload` sends: `files` of `directory` (names), and a generated model card
    when the directory has none; `skipped` are the directory's other entries."""

    directory: Path
    repo_id: str
    revision: str | None = None
    private: bool = False
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # the skipped entries that are symbolic links
    card: str | None = None

    @property
    def uploaded(self) -> list[str]:
        """Every file name the repository receives."""
        return sorted(self.files + ([CARD_FILE] if self.card is not None else []))


def plan_upload(
    directory: str | os.PathLike, repo_id: str, *, revision: str | None = None, private: bool = False,
    card: str | None = None,
) -> UploadPlan:
    """The upload of model directory `directory` to `repo_id`; `card` (markdown) is sent as
    the model card only if the directory has none.  Contacts nothing."""
    directory = Path(directory)
    target = parse_hub_id(repo_id)
    if target is None or target.revision is not None:
        raise VabError(f"{repo_id}: not a Hugging Face Hub id (expected org/name; give a branch with --revision)")
    if revision is not None:
        check_revision(revision, "--revision")
    if not directory.is_dir():
        raise VabError(f"{directory}: not a model directory (no such directory)")
    present = sorted(p.name for p in directory.iterdir())
    links = [name for name in present if (directory / name).is_symlink()]
    files = [name for name in present if name in MODEL_FILES and name not in links and (directory / name).is_file()]
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        why = [f"{name} is a symbolic link" if name in links else f"no {name}" for name in missing]
        raise VabError(f"{directory}: not a model directory to push ({'; '.join(why)}; only regular files inside "
                       "the folder are sent)")
    return UploadPlan(
        directory=directory, repo_id=target.repo_id, revision=revision, private=private, files=files,
        skipped=[name for name in present if name not in files], links=links,
        card=card if CARD_FILE not in files else None,
    )


def upload(plan: UploadPlan, *, message: str | None = None, api: Any = None) -> str:
    """Create the repository (and the branch `plan.revision`) if needed and upload the plan's
    files in one commit with ``HfApi.upload_folder``.  Returns the commit's URL."""
    from huggingface_hub import HfApi  # lazy, as in _snapshot
    from huggingface_hub.errors import HfHubHTTPError  # lazy, as in _snapshot

    api = api if api is not None else HfApi(library_name="vab")
    with _staged(plan) as folder:
        try:
            api.create_repo(plan.repo_id, repo_type="model", private=plan.private, exist_ok=True)
            if plan.revision:
                api.create_branch(plan.repo_id, branch=plan.revision, repo_type="model", exist_ok=True)
            commit = api.upload_folder(
                repo_id=plan.repo_id, folder_path=str(folder), repo_type="model", revision=plan.revision,
                allow_patterns=plan.uploaded, commit_message=message or f"Upload vab model ({', '.join(plan.uploaded)})",
            )
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            hint = "; log in with `hf auth login` or set HF_TOKEN" if status in (401, 403) else ""
            raise VabError(f"{plan.repo_id}: the Hugging Face Hub refused the upload ({_first_line(exc)}{hint})") from None
        except _network_errors() as exc:
            raise VabError(f"{plan.repo_id}: cannot reach the Hugging Face Hub ({_first_line(exc)})") from None
    return str(getattr(commit, "commit_url", commit))


@contextlib.contextmanager
def _staged(plan: UploadPlan) -> Iterator[Path]:
    """A temporary folder of hard links (copies across file systems) to the plan's files, plus
    its card; made beside the directory when possible, so big weights are linked, not copied."""
    try:
        tmp = tempfile.TemporaryDirectory(prefix=".vab-push-", dir=plan.directory.parent)
    except OSError:  # a read-only parent folder
        tmp = tempfile.TemporaryDirectory(prefix="vab-push-")
    with tmp as name:
        folder = Path(name)
        for file in plan.files:
            source = plan.directory / file
            if not stat.S_ISREG(os.lstat(source).st_mode):  # replaced by a link since it was checked
                raise VabError(f"{source}: no longer a regular file; nothing was sent")
            try:
                os.link(source, folder / file, follow_symlinks=False)
            except OSError:
                shutil.copy2(source, folder / file, follow_symlinks=False)
        if plan.card is not None:
            (folder / CARD_FILE).write_text(plan.card)
        yield folder
