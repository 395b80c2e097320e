"""Checkpoints on disk and on the Hub: safetensors + config.json + model card, written atomically.

A checkpoint directory holds the best model so far (model.safetensors, config.json,
README.md) and, in training_state/, what resuming needs. The whole directory is built
beside the target and swapped in with one rename, so a kill at any moment leaves either
the old checkpoint or the new one, never half of each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import reprlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from charrnn.device import pick_device
from charrnn.model import CharRNN, check_config

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
INDEX = "ngram_index.safetensors"  # the training text's hashed 20-grams, for the originality check
STATE_DIR = "training_state"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a 65,536-character vocabulary is under 1 MB of JSON; more is not a charrnn config
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$", re.ASCII)  # owner/name, optionally @revision
MAX_HUB_ID_CHARS = 96 + 1 + 96 + 1 + 255  # the Hub's longest owner and name, and a git ref
SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = {name: SHIPPED_ROOT / name for name in ("fairy-tales", "shakespeare", "tang-poems")}
DEFAULT_MODEL = "fairy-tales"


def resolve_shipped(name: str | Path) -> str | Path:
    """A shipped model's short name ('fairy-tales') to its directory; anything else unchanged."""
    if isinstance(name, str) and name in SHIPPED and not Path(name).exists():
        return SHIPPED[name]
    return name


class CheckpointError(ValueError):
    """A model that cannot be loaded or saved; the message is meant for the user as is."""


# --- atomic directory replacement -------------------------------------------------------

_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True) if os.name == "posix" else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the OS cannot."""
    fn = getattr(_libc, "renameat2", None) if _libc is not None else None
    if fn is None:
        return False
    at_fdcwd = -100
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def replace_dir(new: Path, target: Path) -> None:
    """Put directory new at target, atomically where the OS allows, then drop the old one."""
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)
        return
    recover_interrupted_swap(target)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    os.rename(new, target)  # a kill between these two renames leaves the checkpoint at NAME.old
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_swap(target: Path) -> Path:
    """Put back a checkpoint that replace_dir's fallback moved to NAME.old before a kill; where it is."""
    old = target.with_name(target.name + ".old")
    if target.exists() or not is_checkpoint(old):
        return target
    try:
        os.rename(old, target)
    except OSError:  # a read-only location: load it where it is
        return old
    return target


def staging_dir(target: Path) -> Path:
    """A fresh hidden directory beside target; those left by killed processes are removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = process_temp_dir(f".{target.name}.tmp-", target.parent)
    tmp.chmod(0o755)
    return tmp


def process_temp_dir(prefix: str, parent: str | Path | None = None) -> Path:
    """A fresh directory PREFIX{pid}-… in parent (the temp directory by default).

    Directories with the same prefix left by processes that no longer run (killed before
    they could clean up) are removed first, so a restart leaves nothing behind.
    """
    parent = Path(parent or tempfile.gettempdir())
    for stale in parent.glob(prefix + "*"):
        pid = stale.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def check_writable(target: str | Path) -> None:
    """Fail before a long run, not at its first checkpoint minutes later, when target cannot be written."""
    target = Path(target)
    try:
        probe = staging_dir(target)
    except OSError as exc:
        raise CheckpointError(f"could not write the checkpoint to {target}: {exc.strerror or exc}") from None
    shutil.rmtree(probe, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_tree(path: Path) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


# --- writing ------------------------------------------------------------------------------

def replace_file(path: Path, write: Callable[[str], None]) -> None:
    """write(a temporary path beside path), then rename it over path: a reader or a kill at
    any moment sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_files(model: CharRNN, directory: Path, card: str, state_dict: dict | None = None) -> None:
    """config.json + model.safetensors (+ card) into an existing directory."""
    (directory / CONFIG).write_text(json.dumps(model.config, indent=2, ensure_ascii=False, sort_keys=True))
    tensors = state_dict if state_dict is not None else model.state_dict()
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(directory / WEIGHTS))
    (directory / CARD).write_text(card)


STORAGE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def store_weights_as(directory: str | Path, dtype_name: str) -> tuple[int, int, float]:
    """Rewrite a checkpoint's weights in another dtype, in place and atomically, and return
    (bytes before, bytes after, the largest change to any weight).

    fp16 halves a model's download and disk size; loading casts the weights back to fp32, so
    it computes as before on what it stored (the shipped models' losses moved by ~1e-5).
    A weight beyond fp16's range is refused rather than stored as infinity.
    """
    directory = Path(directory)
    if dtype_name not in STORAGE_DTYPES:
        raise ValueError(f"the storage dtype must be one of {', '.join(STORAGE_DTYPES)}, not {dtype_name!r}")
    if not is_checkpoint(directory):
        raise CheckpointError(f"{directory} is not a model directory (it needs {CONFIG} and {WEIGHTS})")
    path = directory / WEIGHTS
    try:
        tensors = load_file(str(path))
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is damaged or truncated ({exc})") from None
    dtype = STORAGE_DTYPES[dtype_name]
    converted = {}
    for name, tensor in tensors.items():
        converted[name] = tensor.to(dtype).contiguous() if tensor.is_floating_point() else tensor
        if not torch.isfinite(converted[name]).all():
            largest = tensor.abs().max().item()
            raise CheckpointError(f"{name} does not fit in {dtype_name} (its largest weight is {largest:.3g}); "
                                  "keep the model as it is")
    change = max((converted[k].float() - v.float()).abs().max().item()
                 for k, v in tensors.items() if v.is_floating_point())
    before = path.stat().st_size
    replace_file(path, lambda tmp: save_file(converted, tmp))
    return before, path.stat().st_size, change


def save_checkpoint(
    target: str | Path,
    model: CharRNN,
    card: str,
    best_state_dict: dict | None = None,
    training_state: dict | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write a complete checkpoint directory atomically.

    best_state_dict: the weights to publish (default: the model's current ones).
    training_state: {'tensors': {...}, 'meta': {...}} for resuming, or None.
    extra_files: name -> existing file to copy in (a corpus index, for example).
    """
    target = Path(target)
    tmp = None
    try:
        tmp = staging_dir(target)
        write_model_files(model, tmp, card, best_state_dict)
        if training_state is not None:
            state_dir = tmp / STATE_DIR
            state_dir.mkdir()
            state_tensors = {k: v.detach().to("cpu").contiguous() for k, v in training_state["tensors"].items()}
            save_file(state_tensors, str(state_dir / "state.safetensors"))
            (state_dir / "state.json").write_text(json.dumps(training_state["meta"], indent=2))
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        _fsync_tree(tmp)
        replace_dir(tmp, target)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write the checkpoint to {target}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_training_state(directory: str | Path) -> dict:
    state_dir = Path(directory) / STATE_DIR
    if not (state_dir / "state.json").exists():
        raise CheckpointError(f"{directory} has no training state to resume from")
    try:
        return {"tensors": load_file(str(state_dir / "state.safetensors")),
                "meta": json.loads((state_dir / "state.json").read_text())}
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{directory}: the training state is unreadable ({exc})") from None


def is_checkpoint(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / CONFIG).is_file() and (d / WEIGHTS).is_file()


# --- loading ------------------------------------------------------------------------------

def _exists(path: Path) -> bool:
    """Path.exists, False for a name the OS cannot even look up (over 255 bytes, say)."""
    try:
        return path.expanduser().exists()
    except (OSError, ValueError):
        return False


def parse_hub_id(text: str) -> tuple[str, str | None]:
    """'owner/name' or 'owner/name@revision' checked by the Hub's own rules, without looking at the disk."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, _, revision = text.partition("@")
    try:
        if not REPO_ID.match(text) or len(text) > MAX_HUB_ID_CHARS:
            raise HFValidationError("not owner/name")
        validate_repo_id(repo_id)
    except HFValidationError:
        raise CheckpointError(f"{reprlib.repr(text)} is not a Hugging Face Hub repo id "
                              "(owner/name, optionally @revision)") from None
    return repo_id, revision or None


def split_revision(name: str | Path, revision: str | None = None) -> tuple[str | Path, str | None]:
    """'owner/name@v2' -> ('owner/name', 'v2'), so a revision fits wherever one text box names a model."""
    text = str(name)
    if isinstance(name, Path) or "@" not in text or _exists(Path(text)) or not REPO_ID.match(text):
        return name, revision
    repo_id, _, at = text.partition("@")
    if revision and revision != at:
        raise CheckpointError(f"{text} names revision {at!r} but revision {revision!r} was also given")
    return repo_id, at


def resolve_model_dir(name: str | Path, revision: str | None = None) -> Path:
    """A local checkpoint directory for name: a path as is, a Hub repo id (owner/name[@revision]) through the
    standard cache."""
    name, revision = split_revision(name, revision)
    try:
        path = recover_interrupted_swap(Path(name).expanduser())
    except OSError:  # a name the OS cannot look up is no directory
        path = Path(name)
    if _exists(path):
        if revision:
            raise CheckpointError(f"{path} is a local directory; a revision applies to Hub repo ids only")
        if not path.is_dir():
            raise CheckpointError(f"{path} is a file; a model is a directory with {CONFIG} and {WEIGHTS}")
        return path
    if not REPO_ID.match(str(name)):
        raise CheckpointError(f"{name}: no such model directory (and not a Hub repo id like owner/name)")
    return _download(str(name), revision)


def _download(repo_id: str, revision: str | None) -> Path:
    """The repo's charrnn files through the standard cache (HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN).

    Only config.json, model.safetensors and the card are ever fetched: a pickle is never
    downloaded, so there is nothing to be tempted to unpickle.
    """
    from huggingface_hub import get_token, is_offline_mode, snapshot_download
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {reprlib.repr(revision)}" if revision else ""
    try:
        directory = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG, WEIGHTS, CARD, INDEX]))
    except HFValidationError as exc:
        raise CheckpointError(f"{repo_id}: not a valid Hub repo id ({str(exc).splitlines()[0]})") from None
    except GatedRepoError:
        raise CheckpointError(f"{repo_id} is gated: accept its terms on the Hub, "
                              "then set HF_TOKEN or run `hf auth login`") from None
    except RepositoryNotFoundError:
        if get_token() is None:
            raise CheckpointError(f"{repo_id}: no such model on the Hub, or it is private and no token is set "
                                  "(set HF_TOKEN or run `hf auth login`)") from None
        raise CheckpointError(f"{repo_id}: no such model on the Hub, "
                              "or it is private and your token cannot read it") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{repo_id} has no revision {reprlib.repr(revision)} "
                              "(a branch, tag or commit on the Hub)") from None
    except DisabledRepoError:
        raise CheckpointError(f"{repo_id} has been disabled on the Hub") from None
    except LocalEntryNotFoundError:
        if is_offline_mode():
            raise CheckpointError(f"{repo_id}{at} is not in the local cache, "
                                  "and HF_HUB_OFFLINE=1 forbids downloading it") from None
        raise CheckpointError(f"{repo_id}{at} is not in the local cache, "
                              "and the Hub cannot be reached (offline?)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise CheckpointError(f"{repo_id}: the Hub refused the download (HTTP {status})") from None
    except OSError as exc:
        raise CheckpointError(f"{repo_id}: could not download it ({exc.strerror or exc})") from None
    if not (directory / WEIGHTS).is_file():
        refuse_pickles(repo_id, _repo_files(repo_id, revision, directory), " (it was not downloaded)")
    return directory


def refuse_pickles(label: str, names: list[str], note: str = "") -> None:
    """The one refusal of a model that has pickle weights and no safetensors: a pickle can run code."""
    pickles = sorted(name for name in names if name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise CheckpointError(f"{label} holds only pickle weights ({', '.join(pickles)}); charrnn loads {WEIGHTS} "
                              f"only, because unpickling a downloaded file can run arbitrary code{note}")


def _repo_files(repo_id: str, revision: str | None, directory: Path) -> list[str]:
    """The repo's file names as the last download listed them (no network), else what is on disk."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        return [f.path for f in get_cached_repo_tree(repo_id, revision=revision)]
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return [p.name for p in directory.iterdir()] if directory.is_dir() else []


def read_config(directory: Path, label: str | None = None) -> dict:
    """The model's constructor arguments from config.json, refused unless it is a loadable charrnn model.

    label: how to name the model in messages (a repo id rather than its cache path).
    """
    label = label or str(directory)
    config_path = directory / CONFIG
    weights_path = directory / WEIGHTS
    if not weights_path.is_file() and directory.is_dir():
        refuse_pickles(label, [p.name for p in directory.iterdir()])
    if not config_path.is_file():
        raise CheckpointError(f"{label} is not a charrnn model: it has no {CONFIG}")
    size = config_path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{label}: {CONFIG} is {size:,} bytes; "
                              f"a charrnn config is at most {MAX_CONFIG_BYTES:,}, so it was not read")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{label}: {CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "vocab" not in config:
        raise CheckpointError(f"{label} is not a charrnn model: its {CONFIG} has no vocabulary")
    if not weights_path.is_file():
        raise CheckpointError(f"{label} is not a charrnn model: it has no {WEIGHTS}")
    known = {"vocab", "ascii_fold", "cell", "num_layers", "hidden_size", "embedding_dim", "dropout"}
    config = {k: v for k, v in config.items() if k in known}
    try:
        defaults = {"cell": "lstm", "num_layers": 2, "hidden_size": 512, "embedding_dim": 64, "dropout": 0.1}
        check_config(**defaults | {k: v for k, v in config.items() if k != "ascii_fold"})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{label} is not a loadable charrnn model: {exc}") from None
    return config


def load_model(name: str | Path, revision: str | None = None, device: str | torch.device | None = None) -> CharRNN:
    """Load a model by directory or Hub repo id (at an optional revision), strictly: the weights must match
    the config."""
    name, revision = split_revision(name, revision)
    return _load_directory(resolve_model_dir(name, revision), str(name), revision, device)


def load_hub_model(repo_id: str, device: str | torch.device | None = None) -> CharRNN:
    """A model from the Hub by repo id (owner/name[@revision]) only, never a local path of the same name."""
    repo, revision = parse_hub_id(repo_id)
    return _load_directory(_download(repo, revision), repo, revision, device)


def _load_directory(directory: Path, name: str, revision: str | None, device: str | torch.device | None) -> CharRNN:
    label = name + (f"@{revision}" if revision else "")
    config = read_config(directory, label)
    try:
        model = CharRNN.from_pretrained(str(directory), strict=True, **config)
    except SafetensorError as exc:
        raise CheckpointError(f"{label}: {WEIGHTS} is damaged or truncated ({exc})") from None
    except RuntimeError as exc:
        raise CheckpointError(f"{label}: the weights do not match {CONFIG} ({_mismatch(exc)})") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{label}: cannot load the weights ({exc})") from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CheckpointError(f"{label}: {WEIGHTS} holds NaN or infinite weights, so the model cannot generate text")
    model.source = str(name)  # type: ignore[attr-defined]
    model.revision = revision  # type: ignore[attr-defined]
    model.directory = directory  # type: ignore[attr-defined]
    return model.to(pick_device(device)).eval()


def _mismatch(exc: RuntimeError) -> str:
    """The informative line of torch's or safetensors' strict-loading complaint."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    useful = [line for line in lines if "size mismatch" in line or "Missing key" in line or "Unexpected key" in line]
    return (useful or lines or ["shape mismatch"])[0][:300]
