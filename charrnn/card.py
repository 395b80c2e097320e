"""Model cards: the README.md of a checkpoint, in the Hugging Face format, with real figures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from charrnn.model import CharRNN
from charrnn.text import mostly_chinese

PROJECT_HOME = ""  # the project's public home, linked from every model card once it has one
PROJECT_LINK = f"[charrnn]({PROJECT_HOME})" if PROJECT_HOME else "charrnn"
CARD_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


@dataclass
class CardInfo:
    """What a model card says beyond the model itself; every field may be left out.

    The caller says where the model comes from (name, corpus, command); training adds the base
    model and its notes, and at the end of the run what it measured (the val_* fields, samples).
    Each checkpoint's card also gets the run's figures (hardware to hyperparameters).
    """

    # where the model comes from
    name: str = "charrnn model"  # the card's title, and the model-index name once it is evaluated
    corpus: str | None = None  # the training text's file names, "a.txt, b.txt"
    corpus_source: str | None = None  # where the text came from: "uploaded to the charrnn web app"
    datasets: list[str] = field(default_factory=list)  # the Hub dataset ids the corpus came from, when it did
    base_model: str | None = None  # what a fine-tune started from: a Hub id, a directory, a shipped model
    command: str | None = None  # the command line that trained it
    eval_command: str | None = None  # the command line that reproduces val_loss
    notes: list[str] = field(default_factory=list)  # paragraphs for the end of the evaluation
    # the run's figures
    hardware: str | None = None  # "CPU (..., 2 threads)", a GPU's name
    train_time_s: float | None = None  # seconds, the earlier runs of a resumed one included
    steps: int | None = None  # optimizer steps
    chars_seen: int | None = None  # training characters read, repeats included
    hyperparameters: dict[str, object] = field(default_factory=dict)  # the run's config, name -> value
    # what the run measured
    val_loss: float | None = None  # nats/char on the held-out text; None or not finite: not evaluated
    val_losses: dict[str, float] = field(default_factory=dict)  # each file's loss, when there were several
    val_scope: str | None = None  # what val_loss covers: "over the first 524,288 of 2,000,000 held-out characters"
    val_reproducible: bool = True  # eval_command reports val_loss; false when only part of the text was scored
    samples: list[dict] = field(default_factory=list)  # each with temperature, seed, prompt and text

    def unmeasured(self) -> CardInfo:
        """This information without what a run measures anew: the validation figures and the samples."""
        return replace(self, val_loss=None, val_losses={}, val_scope=None, val_reproducible=True, samples=[])

    def to_meta(self) -> dict:
        """The training state's entry: the fields as a plain dict, those that are None left out (older
        versions read a missing key as None), under the names older checkpoints used (val_loss is
        full_val_loss there)."""
        meta = {name: value for name, value in asdict(self).items() if value is not None}
        if "val_loss" in meta:
            meta["full_val_loss"] = meta.pop("val_loss")
        return meta

    @classmethod
    def from_meta(cls, meta: Mapping[str, object]) -> CardInfo:
        """The information in a training state's entry, or in any dict of the fields' names (what
        older checkpoints saved, what library callers passed): keys it does not know, and None
        values, are left out."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in meta.items() if key in known and value is not None}
        if meta.get("full_val_loss") is not None:
            values["val_loss"] = meta["full_val_loss"]
        return cls(**values)


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


def model_card(model: CharRNN, info: CardInfo) -> str:
    """The card of model, from what training knows of it (see CardInfo; CardInfo() says nothing more)."""
    body = [*_introduction(model, info), *_training(model, info), *_evaluation(info), *_samples(info)]
    card = ModelCard.from_template(card_data=card_metadata(model, info), template_str=CARD_TEMPLATE,
                                   body="\n".join(body))
    return str(card)


def _evaluated(info: CardInfo) -> float | None:
    val_loss = info.val_loss
    return val_loss if val_loss is not None and math.isfinite(val_loss) else None


def card_metadata(model: CharRNN, info: CardInfo) -> ModelCardData:
    """What the Hub indexes: library_name, tags, the corpus, and the validation loss as a model-index
    the Hub renders as evaluation results."""
    corpus = info.corpus or "training text"
    val_loss = _evaluated(info)
    eval_results = None
    if val_loss is not None:
        # dataset_type "text" is the plain-text-files loader of `datasets`: the corpus is a file, not a Hub dataset.
        common = {"task_type": "text-generation", "task_name": "Character-level language modelling",
                  "dataset_type": (info.datasets or ["text"])[0], "dataset_name": corpus,
                  "dataset_split": "validation"}
        eval_results = [
            EvalResult(metric_type="loss", metric_name="Validation loss (nats/char)",
                       metric_value=round(val_loss, 4), **common),
            EvalResult(metric_type="bpc", metric_name="Validation bits per character",
                       metric_value=round(val_loss / math.log(2), 4), **common),
        ]
    cell_tag = "lstm" if model.cell == "lstm" else "gru"
    return ModelCardData(
        library_name="charrnn",
        pipeline_tag="text-generation",
        tags=["char-rnn", "text-generation", cell_tag, "pytorch_model_hub_mixin", "model_hub_mixin"],
        datasets=info.datasets or None,
        base_model=hub_repo_id(info.base_model),
        model_name=info.name if eval_results else None,
        eval_results=eval_results,
        corpus=corpus,
    )


def example_prompt(model: CharRNN) -> str:
    """A prompt in the model's own script, for the card's example."""
    return "春日\n" if mostly_chinese("".join(model.vocab.chars)) else "Once upon a time"


def _introduction(model: CharRNN, info: CardInfo) -> list[str]:
    return [
        f"# {info.name}",
        "",
        f"A character-level language model trained with {PROJECT_LINK}: "
        f"a {model.num_layers}-layer {model.cell.upper()} with {model.hidden_size} units, "
        f"{model.num_parameters():,} parameters, a vocabulary of {len(model.vocab)} characters"
        + (", text ASCII-folded with unidecode." if model.ascii_fold else "."),
        "",
        "```python",
        "from charrnn import load_model, SampleSettings, sample",
        "model = load_model('PATH_OR_REPO_ID')",
        f"print(sample(model, {example_prompt(model)!r}, SampleSettings(length=300, seed=1))[0])",
        "```",
        "",
    ]


def _training(model: CharRNN, info: CardInfo) -> list[str]:
    rows = [
        ("corpus", info.corpus),
        ("corpus source", info.corpus_source),
        ("base model (fine-tuned from)", info.base_model),
        ("command", f"`{info.command}`" if info.command else None),
        ("hardware", info.hardware),
        ("training time", f"{info.train_time_s:.0f} s" if info.train_time_s is not None else None),
        ("optimizer steps", info.steps),
        ("characters seen", f"{info.chars_seen:,}" if info.chars_seen else None),
        ("parameters", f"{model.num_parameters():,}"),
    ]
    lines = ["## Training", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None] + [""]
    if info.hyperparameters:
        lines += ["Hyperparameters:", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in info.hyperparameters.items()] + [""]
    return lines


def _evaluation(info: CardInfo) -> list[str]:
    lines = ["## Evaluation", ""]
    val_loss = _evaluated(info)
    if val_loss is not None:
        scope = f", {info.val_scope}" if info.val_scope else ""
        lines += [f"Validation loss: **{val_loss:.4f} nats/char** ({val_loss / math.log(2):.4f} bits/char){scope}."]
        for name, loss in info.val_losses.items():
            lines += [f"- {name}: {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char)"]
        if info.eval_command and info.val_reproducible:
            lines += ["", f"Reproduce: `{info.eval_command}`"]
    else:
        lines += ["Not evaluated yet."]
    lines += [""]
    for note in info.notes:
        lines += [note, ""]
    return lines


def _samples(info: CardInfo) -> list[str]:
    if not info.samples:
        return []
    lines = ["## Samples", ""]
    for s in info.samples:
        lines += [f"Temperature {s['temperature']}, seed {s['seed']}, prompt {s['prompt']!r}:", "", "```text",
                  s["prompt"] + s["text"], "```", ""]
    return lines
