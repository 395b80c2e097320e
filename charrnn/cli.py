"""The command line: `charrnn train | sample | eval | export | ...`, a thin face over the library.

Every refusal is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from charrnn.checkpoint import (
    DEFAULT_MODEL,
    STORAGE_DTYPES,
    CheckpointError,
    load_model,
    resolve_shipped,
    store_weights_as,
)
from charrnn.device import pick_threads
from charrnn.distributed import main_rank_only
from charrnn.model import PRECISIONS
from charrnn.text import TextError
from charrnn.train import TrainingStopped

EXIT_BAD_INPUT = 2
CLI_SAMPLE_EVERY_S = 15.0  # with a time budget, a sample this often, so the run is seen learning


class CLIError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (as every other refusal is), not a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    print(f"charrnn: warning: {message}", file=sys.stderr)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="charrnn", description="Character-level LSTM language models: train, sample, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_sample_parser(sub)
    add_other_parsers(sub)
    return parser


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model on text files (or fine-tune one with --init)")
    t.add_argument("corpus", nargs="+", help="text files; the last part of each is held out for validation")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--init", help="model directory or Hub repo id to fine-tune from")
    t.add_argument("--revision", help="Hub revision (branch, tag or commit) of --init")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out exactly where it stopped")
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    t.add_argument("--time-budget", type=_positive_float, help="wall-clock seconds to train for")
    t.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    t.add_argument("--max-epochs", type=_positive_float,
                   help="stop after N passes over the text (default 20 from scratch, 5 fine-tuning, "
                        "unless a step or time budget is given)")
    t.add_argument("--ascii", action="store_true", default=None,
                   help="fold the text to ASCII with unidecode (default: off, or as the --init model does)")
    t.add_argument("--cell", choices=["lstm", "gru"], default="lstm", help="recurrent cell (default lstm)")
    t.add_argument("--layers", type=int, dest="num_layers", help="recurrent layers (default 2)")
    t.add_argument("--hidden", type=int, dest="hidden_size", help="units per layer (default 512)")
    t.add_argument("--embedding", type=int, dest="embedding_dim", help="character embedding size (default 64)")
    t.add_argument("--dropout", type=_float, help="dropout probability (default 0.1)")
    t.add_argument("--seq-len", type=int, help="characters per backpropagation window (default 128)")
    t.add_argument("--batch-size", type=int, help="parallel streams per step (default 32)")
    t.add_argument("--lr", type=_positive_float,
                   help="peak AdamW learning rate (default 2e-3 from scratch, 5e-4 fine-tuning)")
    t.add_argument("--weight-decay", type=_float, default=0.01, help="AdamW weight decay (default 0.01)")
    t.add_argument("--warmup-steps", type=int,
                   help="linear warmup before the cosine decay (default 100, 20 fine-tuning)")
    t.add_argument("--val-fraction", type=_float, default=0.1,
                   help="share held out from the end of each file (default 0.1)")
    t.add_argument("--patience", type=int, default=8, help="evaluations without improvement before stopping")
    t.add_argument("--eval-interval", type=int,
                   help="steps between evaluations and checkpoints (default: automatic, about 20 per run)")
    t.add_argument("--sample-every", type=int, dest="sample_interval", help="print a short sample every N steps")
    t.add_argument("--sample-every-s", type=_float, metavar="S",
                   help="print a short sample every S seconds, each continuing the text's first words with the same "
                        f"seed (default {CLI_SAMPLE_EVERY_S:g} with --time-budget, else off; 0 is off)")
    t.add_argument("--max-vocab", type=int, default=4096,
                   help="most distinct characters; rarer ones become unknown (default 4096)")
    t.add_argument("--seed", type=int, default=1337, help="random seed; CPU runs are deterministic given it")
    t.add_argument("--device", help="cpu, cuda, mps or auto (default)")
    t.add_argument("--precision", choices=PRECISIONS,
                   help="precision of the matrix products (default: bf16 where the hardware has it natively, "
                        "a CUDA GPU or a CPU with AVX512-BF16/AMX; else fp32)")
    t.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: one per core, "
                        "or one if other processes already fill the cores)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def add_sample_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="generate text from a model")
    s.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                   help="model directory, shipped model name or Hub repo id (default: fairy-tales)")
    s.add_argument("--prompt", default="", help="text to continue (default: none)")
    s.add_argument("--temperature", type=_float, default=0.8, help="0 is greedy, higher is wilder (default 0.8)")
    s.add_argument("--length", type=int, default=500, help="characters to generate (default 500)")
    s.add_argument("--top-k", type=int, help="sample only from the K likeliest characters")
    s.add_argument("--top-p", type=_float,
                   help="sample only from the likeliest characters whose probabilities add up to P")
    s.add_argument("--seed", type=int, help="same seed and settings give the same text (default: drawn and printed)")
    s.add_argument("--num-samples", type=int, default=1,
                   help="samples generated together; sample k has seed SEED + k - 1, "
                        "so each can be written again alone")
    s.add_argument("--stop-at", action="append", default=[], metavar="TEXT",
                   help="end the text as soon as it ends with TEXT (repeatable; \\n is a newline, \\t a tab); "
                        "with --beam, a beam that writes it is finished there")
    s.add_argument("--min-length", type=int, default=0, metavar="N",
                   help="characters written before --stop-at may end the text (default 0)")
    s.add_argument("--beam", type=int, metavar="K",
                   help="beam search: the most likely continuation among K kept at each step (deterministic; "
                        "--num-samples N prints the best N)")
    s.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                   help="with --beam: never write the same N characters twice (6 is a good start; default off)")
    s.add_argument("--revision", help="Hub revision (branch, tag or commit) when MODEL is a repo id")
    s.add_argument("--device", help="cpu, cuda, mps or auto (default)")


def add_other_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="loss of a model on a text file (or standard input), as JSON")
    e.add_argument("model", help="model directory, shipped model name or Hub repo id")
    e.add_argument("textfile", help="text file to score, read and normalised as for training; - reads standard input")
    e.add_argument("--split", choices=["val", "all"], default=None,
                   help="val: the held-out end of the file, as in training (default for a file); "
                        "all: the whole text (default for standard input)")
    e.add_argument("--val-fraction", type=_float, default=0.1, help="the share training held out (default 0.1)")
    e.add_argument("--revision", help="Hub revision (branch, tag or commit) when MODEL is a repo id")
    e.add_argument("--device", help="cpu, cuda, mps or auto (default)")

    p = sub.add_parser("push",
                       help="upload a checkpoint directory (weights, config, model card) to the Hugging Face Hub")
    p.add_argument("directory", help="checkpoint directory to upload")
    p.add_argument("--repo", required=True, help="Hub model repo, owner/name (created if it does not exist)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", help="commit message")
    c = sub.add_parser("convert", help="store a model's weights in another precision (fp16 halves its size)")
    c.add_argument("model", help="model directory to rewrite in place")
    c.add_argument("--dtype", required=True, choices=list(STORAGE_DTYPES), help="storage precision of the weights")
    w = sub.add_parser("export", help="write a model for other runtimes: an ONNX graph of one step, or a web page "
                                      "that generates in the browser")
    w.add_argument("model", help="model directory, shipped model name or Hub repo id")
    w.add_argument("out", help="directory to write: new or empty (or an earlier export, with --overwrite)")
    w.add_argument("--format", required=True, choices=["onnx", "web"],
                   help="onnx: model.onnx and charrnn.json; web: a static folder (index.html, runtime, weights)")
    w.add_argument("--dtype", choices=["fp32", "fp16"],
                   help="how the weights are stored; the arithmetic stays fp32 (default: fp32 for onnx, fp16 for web)")
    w.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    w.add_argument("--revision", help="Hub revision (branch, tag or commit) when MODEL is a repo id")
    x = sub.add_parser("index", help="index a model's training text, for the originality check of what it generates")
    x.add_argument("model", help="model directory (or shipped model name) to write the index into")
    x.add_argument("corpus", nargs="+", help="the text files the model was trained on")


def _choose_threads(requested: int | None) -> int:
    try:
        return pick_threads(requested)
    except ValueError as exc:
        raise CLIError(f"--{exc}") from None


def train_config(args: argparse.Namespace):
    """The TrainConfig the train command's options ask for (None where an option was not given)."""
    from charrnn.config import TrainConfig

    return TrainConfig(
        cell=args.cell, num_layers=args.num_layers, hidden_size=args.hidden_size, embedding_dim=args.embedding_dim,
        dropout=args.dropout, ascii_fold=True if args.ascii else None, max_vocab=args.max_vocab,
        batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, max_steps=args.max_steps, max_epochs=args.max_epochs,
        time_budget=args.time_budget, patience=args.patience, eval_interval=args.eval_interval,
        sample_interval=args.sample_interval, val_fraction=args.val_fraction, seed=args.seed, device=args.device,
        precision=args.precision, sample_every_s=sample_every_s(args),
    )


def sample_every_s(args: argparse.Namespace) -> float | None:
    """--sample-every-s, by default CLI_SAMPLE_EVERY_S with a time budget (0: none)."""
    if args.sample_every_s is None:
        return CLI_SAMPLE_EVERY_S if args.time_budget and not args.sample_interval else None
    if args.sample_every_s < 0:
        raise CLIError(f"--sample-every-s must be 0 or more, not {args.sample_every_s:g}")
    return args.sample_every_s or None


@contextlib.contextmanager
def first_ctrl_c_stops(cancel: threading.Event) -> Iterator[None]:
    """While training: the first Ctrl-C stops after this step and keeps the best checkpoint; a second aborts."""
    def on_interrupt(signum, frame):  # noqa: ARG001
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ncharrnn: stopping after this step and keeping the best checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class TrainProgress:
    """Training events as a tqdm bar (by steps, or by seconds of a time budget) and lines on stderr."""

    def __init__(self, out: str, quiet: bool, time_budget: float | None) -> None:
        self.out, self.quiet, self.time_budget = out, quiet, time_budget
        self.bar = None
        self.by_steps = False
        self.postfix: dict[str, str] = {}

    def show(self, event) -> None:
        from tqdm import tqdm

        if event.kind == "start":
            print(f"charrnn: {event.message}", file=sys.stderr)
            self.by_steps = bool(event.total_steps)
            total = event.total_steps or (int(self.time_budget) if self.time_budget else None)
            self.bar = tqdm(total=total, unit="step" if self.by_steps else "s", disable=self.quiet, dynamic_ncols=True,
                            file=sys.stderr)
        elif event.kind in ("step", "eval"):
            self._update(event)
        elif event.kind == "sample" and self.bar is not None:
            self.bar.write(f"--- sample at step {event.step}, {event.elapsed:.0f} s ---\n{event.sample}\n---",
                           file=sys.stderr)
        elif event.kind == "nan":
            print(f"charrnn: warning: {event.message}", file=sys.stderr)
        elif event.kind == "done":
            self.close()
            print(f"charrnn: {event.message}", file=sys.stderr)
            print(f"charrnn: saved {self.out}", file=sys.stderr)

    def _update(self, event) -> None:
        for key, value, fmt in (("loss", event.train_loss, "{:.3f}"), ("val", event.val_loss, "{:.3f}"),
                                ("chars/s", event.chars_per_s, "{:,.0f}"), ("eta", event.eta, "{:.0f}s")):
            if value is not None:
                self.postfix[key] = fmt.format(value)
        if self.bar is not None:
            self.bar.n = min(self.bar.total or 10**12, event.step if self.by_steps else int(event.elapsed))
            self.bar.set_postfix(self.postfix, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from charrnn.card import CardInfo
    from charrnn.prompts import prompt_suggestions
    from charrnn.text import read_corpus
    from charrnn.train import train

    _choose_threads(args.threads)  # the start line says how many
    if args.revision and not args.init:
        raise CLIError("--revision names a revision of --init; give --init too")
    corpora = [read_corpus(path) for path in args.corpus]
    for corpus in corpora:  # decoding problems were already warned about; this is the other thing done to the text
        if corpus.gutenberg_stripped:
            print(f"charrnn: {corpus.name}: stripped the Project Gutenberg header and licence", file=sys.stderr)
    config = train_config(args)
    if config.sample_every_s:  # every sample goes on from the text's own first words, so the change shows
        config.sample_prompt = next(iter(prompt_suggestions(corpora[0].text)), "")
    command = "charrnn train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None
    card_info = CardInfo(corpus=", ".join(Path(p).name for p in args.corpus), command=command,
                         eval_command=" ; ".join(f"charrnn eval {args.out} {p} --split val" for p in args.corpus))
    cancel = threading.Event()
    progress = TrainProgress(args.out, args.quiet, config.time_budget)
    with first_ctrl_c_stops(cancel):
        try:
            init = resolve_shipped(args.init) if args.init else None
            if init is not None and args.revision:
                init = load_model(init, revision=args.revision, device="cpu")
            events = train(corpora, args.out, config, init=init, resume=args.resume, overwrite=args.overwrite,
                           cancel=cancel, card_info=card_info)
            for event in main_rank_only(events):  # under torchrun only rank 0 reports
                progress.show(event)
        finally:
            progress.close()
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from charrnn.engine import GenerationEngine, sample
    from charrnn.sampling import SampleSettings, prepare_prompt, unescape
    from charrnn.vocab import unknown_chars_note

    model = load_model(resolve_shipped(args.model), revision=args.revision, device=args.device)
    settings = SampleSettings(length=args.length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              seed=args.seed, stop=tuple(unescape(s) for s in args.stop_at),
                              min_length=args.min_length).checked(len(model.vocab))
    prompt, changed = prepare_prompt(model, args.prompt)
    if changed:
        warnings.warn(unknown_chars_note(changed))
    out = sys.stdout
    if args.beam is not None:
        return _beam_sample(model, prompt, args, out)
    if args.seed is None:
        print(f"charrnn: seed {settings.seed}", file=sys.stderr)
    if args.num_samples == 1:
        out.write(prompt)
        request = GenerationEngine.for_model(model).submit(prompt, settings)
        while not request.done:
            out.write("".join(request.take()))
            out.flush()
        out.write("\n")
    else:
        for k, text in enumerate(sample(model, prompt, settings, args.num_samples)):
            out.write(("\n" if k else "") + f"=== sample {k + 1} (seed {settings.seed + k}) ===\n{prompt}{text}\n")
    out.flush()
    return 0


def _beam_sample(model, prompt: str, args: argparse.Namespace, out) -> int:
    """charrnn sample --beam K: the best continuation (or the best --num-samples), with its log-probability."""
    from charrnn.beam import BeamSettings, beam_search
    from charrnn.sampling import unescape

    settings = BeamSettings(width=args.beam, length=args.length, num_results=args.num_samples,
                            no_repeat_ngram=args.no_repeat_ngram, stop=tuple(unescape(s) for s in args.stop_at),
                            min_length=args.min_length)
    results = beam_search(model, prompt, settings)
    for k, result in enumerate(results):
        if len(results) > 1:
            out.write(("\n" if k else "") + f"=== result {k + 1}: {result.mean_log_prob:.4f} nats/char ===\n")
        out.write(f"{prompt}{result.text}\n")
    out.flush()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from charrnn.batching import split_train_val
    from charrnn.evaluate import evaluate_ids
    from charrnn.text import normalize, read_corpus

    _choose_threads(None)

    from_stdin = args.textfile == "-"
    split = args.split or ("all" if from_stdin else "val")
    name = "standard input" if from_stdin else args.textfile
    model = load_model(resolve_shipped(args.model), revision=args.revision, device=args.device)
    if from_stdin:  # the bytes as a file would hold them, so they decode exactly as that file would
        stdin = sys.stdin
        data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")
        corpus = read_corpus(data, name=name)
    else:
        corpus = read_corpus(args.textfile)
    text = normalize(corpus.text, model.ascii_fold)
    if split == "val":
        _, text = split_train_val([text], args.val_fraction)
    if len(text) < 2:
        raise TextError(f"{name}: too little text to evaluate")
    result = evaluate_ids(model, model.vocab.encode(text))
    unknown = model.vocab.unknown_in(text)
    print(json.dumps({"loss": round(result["loss"], 6), "bpc": round(result["bpc"], 6), "chars": result["chars"],
                      "split": split, "model": str(args.model), "unknown_chars": len(unknown)}))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from charrnn.hub import push_to_hub

    print(f"charrnn: pushing {args.directory} to {args.repo}", file=sys.stderr)
    url = push_to_hub(args.directory, args.repo, private=args.private, message=args.message)
    print(url)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from charrnn.checkpoint import INDEX, is_checkpoint, read_config
    from charrnn.originality import build_index
    from charrnn.text import read_corpus

    directory = Path(resolve_shipped(args.model))
    if not is_checkpoint(directory):
        raise CLIError(f"{directory} is not a model directory (it needs config.json and model.safetensors)")
    fold = bool(read_config(directory).get("ascii_fold", False))
    corpora = [read_corpus(path, fold=fold) for path in args.corpus]  # the model's own normalisation, as in training
    index = build_index([c.text for c in corpora], ", ".join(c.name for c in corpora), fold)
    path = index.save(directory / INDEX)
    print(f"charrnn: indexed {index.chars:,} characters ({len(index.hashes):,} distinct {index.n}-character windows) "
          f"into {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    before, after, change = store_weights_as(resolve_shipped(args.model), args.dtype)
    print(f"charrnn: stored the weights as {args.dtype}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB, "
          f"largest weight change {change:.2g} (charrnn eval shows the loss)", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from charrnn.export import SETTINGS, export_model

    source = resolve_shipped(args.model)
    model = load_model(source, revision=args.revision, device="cpu")
    name = Path(source).name if Path(source).exists() else str(args.model)
    out = export_model(model, args.out, args.format, args.dtype, overwrite=args.overwrite, name=name)
    settings = json.loads((out / SETTINGS).read_text(encoding="utf-8"))
    size = sum((out / f).stat().st_size for f in settings["files"]) / 1e6
    print(f"charrnn: exported {name} to {out} ({args.format}, {settings['dtype']} weights, {size:.1f} MB)",
          file=sys.stderr)
    if args.format == "web":
        print(f"charrnn: to try it: python -m http.server --directory {out}, then open http://127.0.0.1:8000/",
              file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "index": cmd_index, "push": cmd_push,
            "convert": cmd_convert, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _warning_line
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        return 0
    except TrainingStopped as exc:  # Ctrl-C before the run had anything to save
        print(f"charrnn: {exc}", file=sys.stderr)
        return 130
    except (TextError, CheckpointError, ValueError, OSError, CLIError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"charrnn: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("charrnn: interrupted", file=sys.stderr)
        return 130
