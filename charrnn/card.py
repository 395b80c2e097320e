"""Model cards: the README.md of a checkpoint, in the Hugging Face format, with real figures."""

from __future__ import annotations

import math

from huggingface_hub import ModelCard, ModelCardData

from charrnn.model import CharRNN


def model_card(model: CharRNN, info: dict) -> str:
    """A card from what training knows; info keys are all optional.

    info: corpus (str), corpus_source (str), command (str), val_loss (float),
    val_losses (dict name -> loss), train_time_s (float), hardware (str), steps (int),
    chars_seen (int), hyperparameters (dict), samples (list of dicts with temperature,
    seed, prompt, text), base_model (str), notes (list of str).
    """
    val_loss = info.get("val_loss")
    metrics = []
    if val_loss is not None and math.isfinite(val_loss):
        metrics = [
            {"type": "loss", "name": "validation loss (nats/char)", "value": round(val_loss, 4)},
            {"type": "bpc", "name": "validation bits per character", "value": round(val_loss / math.log(2), 4)},
        ]
    data = ModelCardData(
        library_name="charrnn",
        pipeline_tag="text-generation",
        tags=["char-rnn", "text-generation", "lstm", "pytorch_model_hub_mixin", "model_hub_mixin"],
        base_model=info.get("base_model"),
        model_name=info.get("name", "charrnn model"),
        eval_results=None,
    )
    if metrics:
        data.model_index = [{
            "name": info.get("name", "charrnn model"),
            "results": [{
                "task": {"type": "text-generation", "name": "character-level language modelling"},
                "dataset": {"type": "text", "name": info.get("corpus", "training text")},
                "metrics": metrics,
            }],
        }]
    lines = [f"# {info.get('name', 'charrnn model')}", ""]
    lines += [
        "A character-level language model trained with [charrnn](https://github.com/charrnn/charrnn): "
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
        "## Training",
        "",
    ]
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
    lines += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows if v is not None] + [""]
    if info.get("hyperparameters"):
        lines += ["Hyperparameters:", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in info["hyperparameters"].items()] + [""]
    lines += ["## Evaluation", ""]
    if val_loss is not None and math.isfinite(val_loss):
        lines += [f"Validation loss: **{val_loss:.4f} nats/char** ({val_loss / math.log(2):.4f} bits/char)."]
        for name, loss in (info.get("val_losses") or {}).items():
            lines += [f"- {name}: {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char)"]
        if info.get("eval_command"):
            lines += ["", f"Reproduce: `{info['eval_command']}`"]
    else:
        lines += ["Not evaluated yet."]
    lines += [""]
    for note in info.get("notes") or []:
        lines += [note, ""]
    if info.get("samples"):
        lines += ["## Samples", ""]
        for s in info["samples"]:
            lines += [f"Temperature {s['temperature']}, seed {s['seed']}, prompt {s['prompt']!r}:", "", "```text", s["prompt"] + s["text"], "```", ""]
    card = ModelCard.from_template(card_data=data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n", body="\n".join(lines))
    return str(card)
