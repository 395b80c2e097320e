"""Pushing a checkpoint to the Hugging Face Hub: one function for the CLI and the app.

Loading by repo id lives in checkpoint.load_model; this is the other direction. The
token is passed straight to huggingface_hub for this one call: it is never printed,
logged, stored or put into an error message.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from charrnn.card import CardInfo, model_card
from charrnn.checkpoint import CARD, CONFIG, INDEX, WEIGHTS, CheckpointError, load_model
from charrnn.model import CharRNN


class HubError(ValueError):
    """A push that could not be done; the message is meant for the user as is."""


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection errors (huggingface_hub 2 uses httpx2) plus OSError."""
    for module in ("httpx2", "httpx"):
        try:
            return (importlib.import_module(module).TransportError, OSError)
        except (ImportError, AttributeError):
            continue
    return (OSError,)


def push_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    message: str | None = None,
) -> str:
    """Upload a checkpoint's model (weights, config.json, model card) to a Hub model repo; return its URL.

    repo_id: "owner/name", or just "name" for the token's own account. The repo is
    created if needed. token: a write token for this call only; None means HF_TOKEN or
    the standard login. Only the published model travels (config.json, model.safetensors,
    README.md, and the originality index if there is one): the resumable training state
    stays local. The model is loaded strictly
    first, so a broken checkpoint is never pushed.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise HubError(f"{directory}: no such checkpoint directory")
    try:
        model = load_model(directory, device="cpu")
    except CheckpointError as exc:
        raise HubError(f"not pushing: {exc}") from None
    repo_id, token = _checked(repo_id, token)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        repo_id = url.repo_id
        if private and not api.model_info(repo_id).private:
            raise HubError(f"{repo_id} already exists and is public; a push does not change its visibility "
                           "(change it in the repo's settings)")
        api.create_commit(
            repo_id=repo_id,
            repo_type="model",
            operations=_operations(directory, model),
            commit_message=message or f"Upload charrnn model ({model.num_layers}-layer {model.cell.upper()}, "
                                      f"{model.hidden_size} units)",
        )
    except HubError:
        raise
    except HfHubHTTPError as exc:
        raise HubError(_explain(exc, repo_id)) from None
    except ValueError as exc:  # huggingface_hub's own refusals, e.g. card metadata the Hub rejects
        detail = "; ".join(str(exc).strip().splitlines())[:300]
        raise HubError(f"the Hub refused the push of {repo_id}: {detail}") from None
    except _network_errors() as exc:
        raise HubError(f"could not reach the Hub to push {repo_id} ({type(exc).__name__})") from None
    return str(url)


def _checked(repo_id: str, token: str | None) -> tuple[str, str | None]:
    """The repo id and the token, stripped (an empty token is None); HubError for a malformed one, or
    when no token is given and none is set up either."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = (repo_id or "").strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(f"{repo_id!r} is not a valid Hub repo name "
                       "(use owner/name: letters, digits, '-', '_', '.')") from None
    token = (token or "").strip() or None
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        raise HubError("that token has characters a Hugging Face token never has: "
                       "copy it again from https://huggingface.co/settings/tokens")
    if token is None and get_token() is None:
        raise HubError("pushing needs a Hugging Face token with write access: "
                       "set HF_TOKEN, run `hf auth login`, or give one")
    return repo_id, token


def _operations(directory: Path, model: CharRNN) -> list:
    """The files a push uploads: config, weights, card, and the originality index if there is one.
    A checkpoint without a card still gets one, made here rather than written into the directory."""
    from huggingface_hub import CommitOperationAdd

    card = directory / CARD if (directory / CARD).is_file() else model_card(model, CardInfo()).encode()
    operations = [CommitOperationAdd(CONFIG, directory / CONFIG), CommitOperationAdd(WEIGHTS, directory / WEIGHTS),
                  CommitOperationAdd(CARD, card)]
    if (directory / INDEX).is_file():
        operations.append(CommitOperationAdd(INDEX, directory / INDEX))
    return operations


def _explain(exc, repo_id: str) -> str:
    """One line for an HTTP refusal, without echoing request headers (which carry the token)."""
    status = exc.response.status_code if getattr(exc, "response", None) is not None else None
    server = (getattr(exc, "server_message", None) or "").strip().splitlines()
    detail = f": {server[0][:200]}" if server else ""
    if status == 401:
        return f"the Hub refused the token (invalid or expired){detail}"
    if status == 403:
        return f"the token may not write to {repo_id} (it needs write access to that account or organisation){detail}"
    if status == 404:
        return f"{repo_id}: not found on the Hub, and it could not be created{detail}"
    if status == 400 and "metadata" in str(exc).lower():
        return f"the Hub refused the model card's metadata{detail}"
    return f"the Hub refused the push of {repo_id} (HTTP {status}){detail}"
