"""Property-based fuzzing of the running app's API with hypothesis.

Every named endpoint that the app lists in its API description (client.view_api), and any it
leaves off that page but answers all the same, is called
with arguments of every JSON type and size: None, booleans, huge and tiny numbers, empty,
long, unicode and control-character strings, paths, URLs, repo ids, lists, dicts, file-like
dicts and nested values, mixed with values of the endpoint's own types so that some calls
get past the first check. The property, for each call:

- it answers within CALL_TIMEOUT_S, with a result or a clear one-line error: an AppError
  carrying the app's own message (not Gradio's generic text for an unexpected exception),
  not empty, without a newline, at most MAX_ERROR_CHARS characters;
- nothing in the process reaches for the network (an audit hook refuses and records any
  connection other than to the app itself; the Hub endpoint points at a name that never
  resolves, in offline mode).

After the examples the app still generates text.

CHARRNN_FUZZ_EXAMPLES sets the examples per endpoint (default small, for CI), CHARRNN_FUZZ_TIMEOUT_S
the per-call bound, CHARRNN_FUZZ_SHRINK=1 lets hypothesis shrink a failing example (each step is a
call to the app, so it is off by default). bench/fuzz_api.py runs many examples without stopping
at the first failure and prints every distinct failure per endpoint.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
import socket
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from app_testing import serve, story_text, tiny_checkpoints

hypothesis = pytest.importorskip("hypothesis")
gradio_client = pytest.importorskip("gradio_client")
import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("CHARRNN_FUZZ_EXAMPLES", "5"))
CALL_TIMEOUT_S = float(os.environ.get("CHARRNN_FUZZ_TIMEOUT_S", "60"))
SHRINK = os.environ.get("CHARRNN_FUZZ_SHRINK", "") not in ("", "0")
MAX_ERROR_CHARS = 300
# gradio_client raises this when the app answered with an error but no message: Gradio sends
# none for an exception that is not a gr.Error (unless launch(show_error=True)).
GENERIC_ERROR = "The upstream Gradio app has raised an exception"
HUB_HOST = "hub.fuzz.invalid"  # where the Hub client is pointed: a name that never resolves
TRAINED = "fuzz-tale"  # the session model the fuzzing client trains first, so /push and the pickers can name one

# Endpoints not fuzzed, by name, and why. None at present: /train is fuzzed with a bounded run
# (see bounded_training), /push with the Hub out of reach (see offline_hub).
SKIPPED: dict[str, str] = {}


# --- the network guard ----------------------------------------------------------------------

@dataclass
class NetworkGuard:
    """A sys audit hook that, while active, refuses every connection except to the app's own port.

    Refused attempts to anything but HUB_HOST are recorded: the app fetched a URL or a path it
    was handed. Audit hooks cannot be removed, so it is installed once and idles when inactive.
    """

    app_port: int | None = None
    active: bool = False
    attempts: list[str] = field(default_factory=list)
    installed: bool = False

    def install(self) -> None:
        if not self.installed:
            sys.addaudithook(self._hook)
            self.installed = True

    @contextlib.contextmanager
    def watching(self, app_port: int) -> Iterator[NetworkGuard]:
        """Guard while inside; the state before (another watch, or none) comes back after."""
        self.install()
        before = self.app_port, self.active
        self.app_port, self.active = app_port, True
        try:
            yield self
        finally:
            self.app_port, self.active = before

    def _allowed(self, event: str, host: str, port: object) -> bool:
        """Resolving an IP literal or localhost asks no one; connecting is allowed to the app only."""
        if event == "socket.getaddrinfo":
            return host == "localhost" or _is_ip(host)
        return _is_loopback(host) and port == self.app_port

    def _hook(self, event: str, args: tuple) -> None:
        if not self.active or event not in ("socket.getaddrinfo", "socket.connect"):
            return
        if event == "socket.getaddrinfo":
            host, port = args[0], args[1]
        elif isinstance(args[1], tuple) and len(args[1]) >= 2:
            host, port = args[1][0], args[1][1]
        else:
            return  # a Unix socket: nothing leaves the machine
        host = host.decode() if isinstance(host, bytes) else str(host)
        if self._allowed(event, host, port):
            return
        if host != HUB_HOST:
            self.attempts.append(f"{event.split('.')[1]} {host}:{port}")
        if event == "socket.getaddrinfo":
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: refused by the fuzz test's network guard")
        raise ConnectionRefusedError(f"{host}:{port}: refused by the fuzz test's network guard")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    return host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host.strip("[]")).is_loopback)


GUARD = NetworkGuard()


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """The Hub client in this process (the app's too) in offline mode, pointed at HUB_HOST, with no token."""
    from huggingface_hub import constants

    endpoint = f"http://{HUB_HOST}"
    with tempfile.TemporaryDirectory(prefix="charrnn-fuzz-hf-") as name, pytest.MonkeyPatch.context() as patch:
        home = Path(name)
        patch.setattr(constants, "ENDPOINT", endpoint)
        patch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        patch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        patch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        patch.delenv("HF_TOKEN", raising=False)
        patch.setenv("HF_ENDPOINT", endpoint)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@dataclass
class ServerErrors:
    """How many exceptions the app's handlers have raised, and the last one (its traceback included)."""

    count: int = 0
    last: BaseException | None = None

    def saw(self, error: BaseException) -> None:
        self.count, self.last = self.count + 1, error


@contextlib.contextmanager
def server_errors() -> Iterator[ServerErrors]:
    """The exceptions the app's handlers raise, as they happen: what Gradio's generic error hides.

    The served app runs in this process, so the function that turns an exception into the
    error payload can be watched; where Gradio has no such function, nothing is seen.
    """
    import gradio.queueing
    import gradio.utils

    seen = ServerErrors()
    original = getattr(gradio.utils, "error_payload", None)

    def recording(error: BaseException | None, show_error: bool) -> dict:
        if error is not None:
            seen.saw(error)
        return original(error, show_error)

    with pytest.MonkeyPatch.context() as patch:
        for module in (gradio.queueing, gradio.utils):
            if original is not None and getattr(module, "error_payload", None) is original:
                patch.setattr(module, "error_payload", recording)
        yield seen


def where_raised(error: BaseException) -> str:
    """'Type: message at file:line in function': the innermost frame of this project's code, else of a library,
    and the standard library's frame below it, if the error came from there."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames
           if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename and "/tests/" not in f.filename]
    libraries = [f for f in frames if "site-packages" in f.filename]
    frame = (own or libraries or frames or [None])[-1]
    if frame is None:
        return f"{type(error).__name__}: {shorten(str(error), 120)}"
    path = Path(frame.filename)
    at = f" at {path.relative_to(ROOT) if own else '/'.join(path.parts[-2:])}:{frame.lineno} in {frame.name}"
    if frames[-1] is not frame:
        at += f" (in {Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].name})"
    return f"{type(error).__name__}: {shorten(str(error), 120)}{at}"


# --- talking to the app -------------------------------------------------------------------------

def client_endpoints(client: Client) -> list:
    return list(client.endpoints.values() if isinstance(client.endpoints, dict) else client.endpoints)


def raw_client(url: str) -> Client:
    """A gradio_client Client that sends each argument as it is.

    gradio_client uploads the local file a FileData dict names (and fails on the client's side
    when there is none); a hostile client sends the dict itself, so that step is turned off.
    """
    client = Client(url, verbose=False, download_files=False)
    for endpoint in client_endpoints(client):
        endpoint.process_input_files = lambda *data: data
    return client


def upload(client: Client, path: Path) -> dict:
    """Upload a local file as the browser does; the FileData dict naming the server's copy."""
    with path.open("rb") as handle:
        response = httpx.post(client.upload_url, files=[("files", (path.name, handle))], timeout=30)
    response.raise_for_status()
    return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def named_endpoints(client: Client) -> dict[str, list[dict]]:
    """Every named endpoint a client can call, with its parameters in gradio_client's view_api format.

    view_api lists the documented ones; an endpoint the app leaves off its API page
    (api_visibility "undocumented", such as gr.Examples' loader) answers all the same, so it
    is added, with parameters made from its input components.
    """
    api = client.view_api(return_format="dict", print_info=False)
    found = {name: info["parameters"] for name, info in api["named_endpoints"].items()}
    kinds = {c["id"]: str(c.get("type", "")) for c in client.config.get("components", [])}
    for endpoint in client_endpoints(client):
        if endpoint.is_valid and endpoint.backend_fn and endpoint.api_name and endpoint.api_name not in found:
            inputs = [kinds.get(i, "") for i in endpoint.dependency.get("inputs", [])]
            found[endpoint.api_name] = [{"parameter_name": f"input_{n}", "component": kind.capitalize(), "type": {}}
                                        for n, kind in enumerate(inputs) if kind != "state"]
    return found


@dataclass
class Outcome:
    """What one call came back with, and how long it took."""

    endpoint: str
    args: tuple
    seconds: float
    result: Any = None
    error: str | None = None
    error_type: str | None = None  # the exception's class: AppError for an error the app sent back
    timed_out: bool = False
    network: list[str] = field(default_factory=list)
    raised: str | None = None  # what the handler raised on the server, where it could be seen


def call(client: Client, endpoint: str, args: tuple, timeout: float = CALL_TIMEOUT_S,
         raised: ServerErrors | None = None) -> Outcome:
    """Call an endpoint through submit(), so a streaming one is read to its final result or error.

    raised: what server_errors() sees, to name the exception behind a generic error.
    """
    seen, before = len(GUARD.attempts), raised.count if raised else 0
    start = time.monotonic()
    outcome, job = Outcome(endpoint, args, 0.0), None
    try:
        job = client.submit(*args, api_name=endpoint)
        outcome.result = job.result(timeout=timeout)
    except TimeoutError:
        outcome.timed_out = True
        if job is not None:
            job.cancel()
    except Exception as exc:  # noqa: BLE001 (every kind of failure is an outcome to judge)
        outcome.error_type = type(exc).__name__
        outcome.error = exc.message if isinstance(exc, AppError) else str(exc)
    outcome.seconds = time.monotonic() - start
    outcome.network = GUARD.attempts[seen:]
    if raised is not None and raised.count > before and raised.last is not None:
        outcome.raised = where_raised(raised.last)
    return outcome


def problems(outcome: Outcome, timeout: float = CALL_TIMEOUT_S) -> list[str]:
    """How the outcome breaks the property; empty when it holds."""
    found = [f"reached for the network: {', '.join(sorted(set(outcome.network)))}"] if outcome.network else []
    if outcome.timed_out:
        return [*found, f"no answer within {timeout:g} s"]
    if outcome.error_type is None:
        return found
    message = outcome.error
    if outcome.error_type != "AppError":
        found.append(f"{outcome.error_type} instead of an AppError: {shorten(message)}")
    elif not message or not message.strip():
        found.append("an empty error message")
    elif GENERIC_ERROR in message:
        found.append("Gradio's generic error (an exception that is not a gr.Error)")
    else:
        if "\n" in message or "\r" in message:
            found.append(f"a multi-line error ({message.count(chr(10)) + 1} lines)")
        if len(message) > MAX_ERROR_CHARS:
            found.append(f"an error of {len(message):,} characters (at most {MAX_ERROR_CHARS})")
    return found


def shorten(value: Any, room: int = 40, depth: int = 0) -> str:
    """A repr for reports: long strings, big numbers, deep and long containers cut, with their size."""
    if isinstance(value, str):
        return repr(value) if len(value) <= room else f"{value[:room // 2]!r}…({len(value):,} chars)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"<int of {len(str(abs(value)))} digits>"
    if isinstance(value, (list, tuple, dict)):
        items = list(value.items()) if isinstance(value, dict) else list(value)
        if depth >= 3 and items:
            return f"<{type(value).__name__} of {len(items):,}, nested>"

        def show(item: object) -> str:  # a dict's items as key: value
            if isinstance(value, dict):
                return f"{shorten(item[0], 20, depth + 1)}: {shorten(item[1], room, depth + 1)}"
            return shorten(item, room, depth + 1)

        keep = 12 if depth == 0 else 6  # an endpoint's arguments in full, nested containers cut
        inner = ", ".join(show(item) for item in items[:keep])
        if len(items) > keep:
            inner += f", …({len(items):,} items)"
        return {"list": f"[{inner}]", "tuple": f"({inner})", "dict": "{" + inner + "}"}[type(value).__name__]
    return repr(value)


def describe(outcome: Outcome, found: list[str]) -> str:
    """One line: what is wrong, the call, what came back and how long it took."""
    what = (f"error {outcome.error_type}: {shorten(outcome.error, 160)}" if outcome.error_type
            else "no answer" if outcome.timed_out else f"result {shorten(outcome.result, 80)}")
    behind = f" [raised {outcome.raised}]" if outcome.raised and outcome.error_type else ""
    request = f"{outcome.endpoint}{shorten(outcome.args)}"
    return f"{'; '.join(found)}{behind}: {request} -> {what} after {outcome.seconds:.2f} s"


# --- what to send ----------------------------------------------------------------------------------

INTS = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 2**70, 10**100, -(10**100), 10**4000]),
)
# NaN and infinity are not JSON; finite floats of every size are.
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 0.5, 1.5, 1e-300, 5e-324, -5e-324, 1e20, 1e308, -1e308, 2.0**70]),
)
CHARS = st.characters(exclude_categories=("Cs",))  # lone surrogates cannot be encoded as UTF-8 for the request
SPECIAL_STRINGS = ["", " ", "\n", "\r\n", "\t", "\x00", "\x00abc", "\x1b[31mred\x1b[0m", "\u202eevil", "\ufeffbom",
                   "😀" * 3, "a\nb", "' OR 1=1 --", "<script>alert(1)</script>", "{}", "[]", "null", "NaN", "-1",
                   "1e999", "0x10"]
PATHS = ["../../etc/passwd", "/etc/passwd", "../../../../../../etc/shadow", "..\\..\\windows\\win.ini", "~/.bashrc",
         "/proc/self/environ", "/dev/zero", "/dev/urandom", "checkpoints/../app.py", "fairy-tales/../fairy-tales",
         "./fairy-tales", "/", ".", "..", "/tmp", "nul", str(ROOT / "app.py"), str(ROOT / "README.md")]
# URLs that lead nowhere: the discard port on this machine, a name that never resolves, other schemes.
URLS = ["http://127.0.0.1:9/x.txt", "https://fuzz.invalid/x.txt", "http://[::1]:9/x.txt", "file:///etc/passwd",
        "ftp://127.0.0.1:9/x.txt", "//127.0.0.1:9/x.txt", "data:text/plain,hello",
        "http://127.0.0.1:9/gradio_api/file=/etc/passwd"]
REPO_IDS = ["owner/name", "gpt2", "fuzz/fairy-tales", "a" * 97 + "/b", "owner/name@main", "owner/name/extra",
            "-bad-/name", "owner/..", "user/char-rnn-poems"]
TOKENS = ["hf_" + "a" * 34, "hf_", "hf_ spaces in it", "hf_\u00e9\u00e8", "not-a-token"]
PROSE = ["Once upon a time", "Once", "The king", "ROMEO:\n", "\"Who is there?\" asked the old woman.", story_text(3)]
LONG_UNITS = ["a", "Once upon a time ", "é", "\n", "😀", "\x00", "<b>", "\u0301", " "]


def long_strings() -> st.SearchStrategy[str]:
    """Strings of 500 to 300,000 characters, built by repetition (drawing them char by char is slow)."""
    sizes = st.one_of(st.sampled_from([1_000, 10_000, 100_000, 300_000]), st.integers(500, 300_000))
    return st.builds(lambda unit, n: (unit * (n // len(unit) + 1))[:n], st.sampled_from(LONG_UNITS), sizes)


STRINGS = st.one_of(
    st.text(CHARS, max_size=40),
    st.text(st.characters(codec="ascii"), max_size=20),
    st.sampled_from(SPECIAL_STRINGS + PATHS + URLS + REPO_IDS + TOKENS),
    long_strings(),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, STRINGS)
FILE_DATA = {"_type": "gradio.FileData"}


def file_dicts(paths: st.SearchStrategy[str] = st.sampled_from(PATHS + URLS) | STRINGS) -> st.SearchStrategy[dict]:
    """FileData payloads naming any path or URL, with or without their other keys."""
    return st.one_of(
        st.fixed_dictionaries({"path": paths, "meta": st.just(FILE_DATA)},
                              optional={"orig_name": STRINGS, "url": st.sampled_from(URLS) | STRINGS, "size": INTS,
                                        "mime_type": st.sampled_from(["text/plain", "application/pdf", ""]),
                                        "is_stream": st.booleans()}),
        st.fixed_dictionaries({"path": paths}),
        st.fixed_dictionaries({"url": st.sampled_from(URLS), "meta": st.just(FILE_DATA)}),
        st.fixed_dictionaries({"path": SCALARS, "meta": st.one_of(st.just(FILE_DATA), SCALARS)}),
    )


def big_containers() -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda n: [0] * n, st.sampled_from([1_000, 100_000])),
        st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.sampled_from([1_000, 20_000])),
        st.builds(lambda depth: _nested(depth), st.integers(10, 100)),
    )


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


JUNK = st.recursive(
    SCALARS | file_dicts(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(CHARS, max_size=8), children, max_size=5),
    max_leaves=12,
) | big_containers()


@dataclass
class Pool:
    """App-specific values that make valid-looking arguments: uploads on the server, model names."""

    uploads: list[dict]
    trainable: list[dict]  # the uploads made to be trained on (the others may be refused)
    names: list[str]


SLIDER_RANGE = re.compile(r"between (-?[\d.]+) and (-?[\d.]+)")


def valid_values(param: dict, pool: Pool) -> st.SearchStrategy:
    """Values of the parameter's own kind: its choices, numbers in its range, uploaded files, model names."""
    component, kind = param.get("component", ""), param.get("type") or {}
    example, default = param.get("example_input"), param.get("parameter_default")
    # The File example names a real URL, and "Hello!!" is Gradio's example for every Textbox.
    known = [v for v in (default, example)
             if component != "File" and not (isinstance(v, str) and ("://" in v or v == "Hello!!"))]
    if kind.get("type") == "string" and component not in ("Dropdown", "Radio"):
        known.append("")  # an empty box: what an optional text field most often holds
    # The parameter's default and example come up as often as all the other kinds together.
    options: list[st.SearchStrategy] = [st.sampled_from(known)] * 4 if known else []
    if kind.get("enum"):
        options.append(st.sampled_from([*kind["enum"], *pool.names]))
    if component == "Dropdown" and kind.get("type") == "array":  # Compare's and Score's models: several at once
        options.append(st.lists(st.sampled_from(pool.names), min_size=2, max_size=4))
    if "hub" in str(param.get("parameter_name", "")):  # one repo id, or several joined by commas
        options.append(st.lists(st.sampled_from(REPO_IDS), min_size=1, max_size=5).map(",".join))
    if component == "Slider":
        bounds = SLIDER_RANGE.search(kind.get("description", ""))
        low, high = (float(bounds[1]), float(bounds[2])) if bounds else (0.0, 1.0)
        options += [st.floats(low, high), st.integers(math.ceil(low), math.floor(high)), st.sampled_from([low, high])]
    elif component == "Number":
        options += [st.integers(0, 5), st.integers(-3, 1_000), st.floats(0, 1)]
    elif component == "Checkbox":
        options.append(st.booleans())
    elif component == "File":
        options.append(st.sampled_from(pool.uploads))
        names = ["../../x.txt", "a" * 10_000 + ".txt", "x\n.txt", "", ".txt", "story.pdf"]
        options.append(st.builds(lambda f, name: {**f, "orig_name": name}, st.sampled_from(pool.uploads),
                                 st.sampled_from(names)))
    elif component == "Dropdown" or component == "Radio":
        options.append(st.sampled_from(pool.names))
    elif component == "Dataset":  # gr.Examples' table: its loader takes the index of a row
        options.append(st.integers(-2, 8))
    elif component == "Dataframe":
        row = st.tuples(st.sampled_from(["quote", "line position", "x"]), st.integers(1, 5), st.integers(0, 3),
                        st.integers(0, 40), st.sampled_from(["cell state c", "hidden state h"]),
                        st.floats(-1, 1)).map(list)
        headers = ["feature", "rank", "layer", "unit", "state", "r"]
        options.append(st.builds(lambda rows: {"headers": headers, "data": rows, "metadata": None},
                                 st.lists(row, max_size=4)))
    if kind.get("type") == "string" and component not in ("Dropdown", "Radio"):
        options += [st.sampled_from([*PROSE, *pool.names, "7", "0", "42"]), st.text(CHARS, max_size=60)]
    return st.one_of(options) if options else JUNK


def bounded_training(params: list[dict], pool: Pool) -> Callable[[list, Callable], list]:
    """/train on one of the uploads stops after 1 to 3 steps.

    Any other step limit would let a run the app accepts go on for its whole time budget, and
    the shortest budget (a minute) is longer than a call may take. Whether the app accepts an
    upload is for it to say, so every upload is bounded; with any other file argument (which
    the app must refuse) every argument is drawn freely.
    """
    names = [p.get("parameter_name") for p in params]
    if "file" not in names or "max_steps" not in names:
        return lambda args, draw: args  # noqa: ARG005
    file_at, steps_at = names.index("file"), names.index("max_steps")
    uploaded = {f["path"] for f in pool.uploads}

    def tame(args: list, draw: Callable) -> list:
        upload = args[file_at]
        if isinstance(upload, dict) and upload.get("path") in uploaded:  # whatever its other keys say
            args[steps_at] = draw(st.integers(1, 3))
        return args

    return tame


BOUNDS: dict[str, Callable[[list[dict], Pool], Callable[[list, Callable], list]]] = {"/train": bounded_training}


def arguments(endpoint: str, params: list[dict], pool: Pool) -> st.SearchStrategy[tuple]:
    """All valid-looking, all but one, or each a coin toss between valid-looking and junk."""
    valid = [valid_values(p, pool) for p in params]
    tame = BOUNDS.get(endpoint, lambda *_: lambda args, draw: args)(params, pool)  # noqa: ARG005

    @st.composite
    def draw_args(draw: Callable) -> tuple:
        mode = draw(st.sampled_from(["valid", "valid", "one junk", "one junk", "mixed"]))
        odd = draw(st.sampled_from(range(len(params)))) if params else -1
        args = []
        for i, strategy in enumerate(valid):
            if mode == "valid" or (mode == "one junk" and i != odd):
                args.append(draw(strategy))
            elif mode == "one junk":
                args.append(draw(JUNK))
            else:
                args.append(draw(st.one_of(strategy, JUNK)))
        return tuple(tame(args, draw))

    return draw_args()


# --- the app under fuzzing -------------------------------------------------------------------------

@dataclass
class FuzzApp:
    """The served app, a raw client whose session holds one trained model, and the values to fuzz with."""

    url: str
    client: Client
    endpoints: dict[str, list[dict]]
    pool: Pool
    raised: ServerErrors = field(default_factory=ServerErrors)


def write_uploads(folder: Path) -> tuple[list[Path], list[Path]]:
    """Local files to upload: two the app can train on, and the kinds it must refuse."""
    good = [folder / f"{TRAINED}.txt", folder / "curly-tale.txt"]
    good[0].write_text(story_text(150, seed=21))
    good[1].write_text(story_text(150, seed=22).replace(" the ", " “the” ") + "Café — naïve 😀\n")
    bad = {"empty.txt": b"", "short.txt": b"Too short.\n", "binary.txt": bytes(range(256)) * 20,
           "nul.txt": b"abc\x00def" * 300,
           "latin1.txt": story_text(150, seed=23).replace("king", "k\xf6nig").encode("latin-1"),
           "fake.pdf": b"%PDF-1.4\n" + b"x" * 3000}
    for name, content in bad.items():
        (folder / name).write_bytes(content)
    return good, [folder / name for name in bad]


def train_one(client: Client, upload_dict: dict) -> str:
    """Fine-tune a few steps in the client's session: the name of the model it made."""
    params = named_endpoints(client)["/train"]
    args = {p["parameter_name"]: p.get("parameter_default") for p in params}
    args.update(file=upload_dict, base="fairy-tales", minutes=1, max_steps=2)
    result = client.predict(*(args[p["parameter_name"]] for p in params), api_name="/train")
    picker = result[3]
    return picker["value"] if isinstance(picker, dict) else TRAINED


@contextlib.contextmanager
def fuzz_app() -> Iterator[FuzzApp]:
    """The shared app with the Hub offline and the network guarded, for the length of the fuzzing."""
    with tempfile.TemporaryDirectory(prefix="charrnn-fuzz-uploads-") as name, offline_hub(), \
            served_with_tang(Path(name)) as url, GUARD.watching(int(url.rstrip("/").rsplit(":", 1)[1])), \
            server_errors() as raised:
        folder = Path(name)
        client = raw_client(url)
        good, bad = write_uploads(folder)
        trainable = [upload(client, path) for path in good]
        uploads = trainable + [upload(client, path) for path in bad]
        names = ["fairy-tales", "tang-poems", train_one(client, trainable[0])]
        pool = Pool(uploads=uploads, trainable=trainable, names=names)
        try:
            yield FuzzApp(url, client, named_endpoints(client), pool, raised)
        finally:
            client.close()


@contextlib.contextmanager
def served_with_tang(folder: Path) -> Iterator[str]:
    """The app on the tiny fairy-tales model and the shipped Tang model (a 4,096-character vocabulary)."""
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "fairy-tales").symlink_to(tiny_checkpoints() / "fairy-tales")
    (checkpoints / "tang-poems").symlink_to(ROOT / "checkpoints" / "tang-poems")
    demo, url = serve(checkpoints)
    try:
        yield url
    finally:
        demo.close()


def fuzz_endpoint(app: FuzzApp, endpoint: str, examples: int, record: Callable[[Outcome], None] | None = None,
                  stop_at_failure: bool = True, seed_offset: int = 0) -> None:
    """Run the property over one endpoint: raises AssertionError (via hypothesis) at the first failing call,
    or with stop_at_failure off, only hands every outcome to record."""
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK and stop_at_failure else [])]

    @seed(zlib.crc32(endpoint.encode()) + seed_offset)  # reproducible, and different for each endpoint
    @settings(max_examples=examples, deadline=None, database=None, phases=phases,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(args=arguments(endpoint, app.endpoints[endpoint], app.pool))
    def check(args: tuple) -> None:
        outcome = call(app.client, endpoint, args, raised=app.raised)
        if record is not None:
            record(outcome)
        found = problems(outcome)
        if stop_at_failure:
            assert not found, describe(outcome, found)

    check()


def generates(url: str) -> str:
    """A plain /generate with a fresh client: the text, or why there is none."""
    client = Client(url, verbose=False)
    try:
        job = client.submit("Once upon", 0.8, 40, "3", "fairy-tales", "", 0, 1.0, api_name="/generate")
        text, _ = job.result(timeout=CALL_TIMEOUT_S)
        return text
    except Exception as exc:  # noqa: BLE001
        return f"<{type(exc).__name__}: {shorten(str(exc), 200)}>"
    finally:
        client.close()


# --- the tests ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app() -> Iterator[FuzzApp]:
    with fuzz_app() as served:
        yield served


def test_every_named_endpoint_is_fuzzed(app):
    """The discovered endpoints include the ones the app is known for; none is skipped without a reason."""
    assert {"/generate", "/train", "/read_upload", "/push"} <= set(app.endpoints)
    assert set(SKIPPED) <= set(app.endpoints)
    assert all(SKIPPED.values())
    assert app.pool.names[-1].startswith(TRAINED)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # hypothesis, about a failing example's long strings
def test_every_endpoint_answers_in_time_with_a_result_or_a_clear_error(app):
    failures: dict[str, str] = {}
    for endpoint in app.endpoints:
        if endpoint in SKIPPED:
            continue
        try:
            fuzz_endpoint(app, endpoint, EXAMPLES)
        except Exception as exc:  # noqa: BLE001 (hypothesis's report of the failing example, or a Flaky one)
            failures[endpoint] = shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 1200)
    text = generates(app.url)
    healthy = text.startswith("Once upon") and len(text) == len("Once upon") + 40
    report = "\n".join(f"- {endpoint}: {why}" for endpoint, why in failures.items())
    assert healthy, f"after the fuzzing a plain /generate gave {text!r}" + (f"; failures:\n{report}" if report else "")
    assert not failures, f"{len(failures)} endpoint(s) broke the property:\n{report}"


def test_the_property_catches_what_it_should():
    """The property itself: a clean error passes; a generic, empty, long or multi-line one fails."""
    ok = Outcome("/x", (), 0.1, error="the length must be at most 2,000", error_type="AppError")
    assert problems(ok) == []
    assert problems(Outcome("/x", (), 0.1, result=("text", "1"))) == []
    generic = "The upstream Gradio app has raised an exception but has not enabled verbose error reporting."
    for bad in (generic, "", None, "two\nlines", "x" * (MAX_ERROR_CHARS + 1)):
        assert problems(Outcome("/x", (), 0.1, error=bad, error_type="AppError")), bad
    assert problems(Outcome("/x", (), 0.1, error="boom", error_type="ValueError"))
    assert problems(Outcome("/x", (), 61.0, timed_out=True))
    assert problems(Outcome("/x", (), 0.1, result="x", network=["connect 127.0.0.1:9"]))


def test_the_network_guard_refuses_and_records_other_hosts():
    before = GUARD.active, GUARD.app_port
    with GUARD.watching(app_port=1):
        seen = len(GUARD.attempts)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 9), timeout=2)
        with pytest.raises(OSError):
            socket.getaddrinfo("fuzz.invalid", 80)
        with pytest.raises(OSError):
            socket.getaddrinfo(HUB_HOST, 80)
        assert GUARD.attempts[seen:] == ["connect 127.0.0.1:9", "getaddrinfo fuzz.invalid:80"]
    assert (GUARD.active, GUARD.app_port) == before  # and it goes back to what it was doing
