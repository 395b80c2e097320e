"""Model cards: the README.md of a checkpoint, in the Hugging Face format, with real figures."""

from __future__ import annotations

import math
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from charrnn.model import CharRNN

PROJECT_HOME = ""  # the project's public home, linked from every model card once it has one
PROJECT_LINK = f"[charrnn]({PROJECT_HOME})" if PROJECT_HOME else "charrnn"


def hub_repo_id(name: object) -> str | None:
    """name if it is a Hub model id (what base_model must hold on the Hub), else None.

    A fine-tune of a local directory or a shipped model has no Hub id to point at; the
    card's body still names it.
    """
    if not isinstance(name, str) or name.count("/") != 1:
        return None
    try:
        validate_repo_id(name)
        if Path(name).expanduser().exists():
            return None
    except (HFValidationError, OSError):
        return None
    return name


def model_card(model: CharRNN, info: dict) -> str:
    """A card from what training knows; info keys are all optional.

    info: corpus (str), corpus_source (str), command (str), val_loss (float),
    val_losses (dict name -> loss), val_scope (str: what val_loss covers, "over the first
    524,288 of 2,000,000 held-out characters"), val_reproducible (bool, default True:
    eval_command reports val_loss; false when only part of the text was scored),
    train_time_s (float), hardware (str), steps (int), chars_seen (int), hyperparameters (dict),
    samples (list of dicts with temperature, seed, prompt, text), base_model (str), notes (list
    of str), datasets (list of Hub dataset ids the corpus came from, when it did).
    """
    body = [*_introduction(model, info), *_training(model, info), *_evaluation(info), *_samples(info)]
    card = ModelCard.from_template(card_data=card_metadata(model, info), template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                   body="\n".join(body))
    return str(card)


def _evaluated(info: dict) -> float | None:
    val_loss = info.get("val_loss")
    return val_loss if val_loss is not None and math.isfinite(val_loss) else None


def card_metadata(model: CharRNN, info: dict) -> ModelCardData:
    """What the Hub indexes: library_name, tags, the corpus, and the validation loss as a model-index
    the Hub renders as evaluation results."""
    name = info.get("name", "charrnn model")
    corpus = info.get("corpus") or "training text"
    val_loss = _evaluated(info)
    eval_results = None
    if val_loss is not None:
        # dataset_type "text" is the plain-text-files loader of `datasets`: the corpus is a file, not a Hub dataset.
        common = {"task_type": "text-generation", "task_name": "Character-level language modelling",
                  "dataset_type": (info.get("datasets") or ["text"])[0], "dataset_name": corpus, "dataset_split": "validation"}
        eval_results = [
            EvalResult(metric_type="loss", metric_name="Validation loss (nats/char)", metric_value=round(val_loss, 4), **common),
            EvalResult(metric_type="bpc", metric_name="Validation bits per character",
                       metric_value=round(val_loss / math.log(2), 4), **common),
        ]
    return ModelCardData(
        library_name="charrnn",
        pipeline_tag="text-generation",
        tags=["char-rnn", "text-generation", "lstm" if model.cell == "lstm" else "gru", "pytorch_model_hub_mixin", "model_hub_mixin"],
        datasets=info.get("datasets") or None,
        base_model=hub_repo_id(info.get("base_model")),
        model_name=name if eval_results else None,
        eval_results=eval_results,
        corpus=corpus,
    )


def _introduction(model: CharRNN, info: dict) -> list[str]:
    return [
        f"# {info.get('name', 'charrnn model')}",
        "",
        f"A character-level language model trained with {PROJECT_LINK}: "
        f"a {model.num_layers}-layer {model.cell.upper()} with {model.hidden_size} units, "
        f"{model.num_parameters():,} parameters, a vocabulary of {len(model.vocab)} characters"
        + (", text ASCII-folded with unidecode." if model.ascii_fold else "."),
        "",
        "```python",
        "from charrnn import load_model, SampleSettings, sample",
        "model = load_model('PATH_OR_REPO_ID')",
        "print(sample(model, 'Once upon a time', SampleSettings(length=300, seed=1).checked(len(model.vocab)))[0])",
        "```",
        "",
    ]


def _training(model: CharRNN, info: dict) -> list[str]:
    rows = [
        ("corpus", info.get("corpus")),
        ("corpus source", info.get("corpus_source")),
        ("base model (fine-tuned from)", info.get("base_model")),
        ("command", f"`{info['command']}`" if info.get("command") else None),
        ("hardware", info.get("hardware")),
        ("training time", f"{info['train_time_s']:.0f} s" if info.get("train_time_s") is not None else None),
        ("optimizer steps", info.get("steps")),
        ("characters seen", f"{info['chars_seen']:,}" if info.get("chars_seen") else None),
        ("parameters", f"{model.num_parameters():,}"),
    ]
    lines = ["## Training", "", "| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows if v is not None] + [""]
    if info.get("hyperparameters"):
        lines += ["Hyperparameters:", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in info["hyperparameters"].items()] + [""]
    return lines


def _evaluation(info: dict) -> list[str]:
    lines = ["## Evaluation", ""]
    val_loss = _evaluated(info)
    if val_loss is not None:
        scope = f", {info['val_scope']}" if info.get("val_scope") else ""
        lines += [f"Validation loss: **{val_loss:.4f} nats/char** ({val_loss / math.log(2):.4f} bits/char){scope}."]
        for name, loss in (info.get("val_losses") or {}).items():
            lines += [f"- {name}: {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char)"]
        if info.get("eval_command") and info.get("val_reproducible", True):
            lines += ["", f"Reproduce: `{info['eval_command']}`"]
    else:
        lines += ["Not evaluated yet."]
    lines += [""]
    for note in info.get("notes") or []:
        lines += [note, ""]
    return lines


def _samples(info: dict) -> list[str]:
    if not info.get("samples"):
        return []
    lines = ["## Samples", ""]
    for s in info["samples"]:
        lines += [f"Temperature {s['temperature']}, seed {s['seed']}, prompt {s['prompt']!r}:", "", "```text",
                  s["prompt"] + s["text"], "```", ""]
    return lines
