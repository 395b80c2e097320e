"""The Hub, with no network: a hand-built cache for offline loading, and a local HTTP server
speaking the Hub's few endpoints so the real huggingface_hub code pushes and downloads.

The server (FakeHub) answers what huggingface_hub 2 sends: repo create, model info, tree
listing, file resolve (HEAD/GET), README metadata validation, preupload, the LFS batch API
with a basic PUT upload, and the ndjson commit. HF_HUB_DISABLE_XET=1 makes the client
upload the safetensors file through LFS, which the server can receive, instead of Xet.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, ModelCardData, constants
from safetensors.torch import save_file

from charrnn.card import CardInfo, model_card
from charrnn.checkpoint import INDEX, CheckpointError, load_model, save_checkpoint
from charrnn.engine import sample
from charrnn.hub import HubError, push_to_hub
from charrnn.model import CharRNN
from charrnn.sampling import SampleSettings
from charrnn.vocab import Vocab

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the quick brown fox jumps over the lazy dog. " * 4
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WRITE_TOKEN = "hf_test_write_token_0123456789"


def tiny_model(hidden: int = 16, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(vocab=list(Vocab.build(TEXT).chars), num_layers=1, hidden_size=hidden, embedding_dim=8,
                   dropout=0.0).eval()


def checkpoint(tmp_path: Path, name: str = "ckpt", val_loss: float | None = 1.5, **info) -> tuple[CharRNN, Path]:
    model = tiny_model()
    card = model_card(model, CardInfo(val_loss=val_loss, corpus="fox.txt", name=name, **info))
    return model, save_checkpoint(tmp_path / name, model, card)


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main",
               commit: str = COMMIT) -> Path:
    """Lay files out exactly as huggingface_hub's cache does: blobs, snapshots/<commit> symlinks, refs/<revision>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def model_files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("config.json", "model.safetensors", "README.md")}


def same_weights(a: CharRNN, b: CharRNN) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF_HUB_CACHE with HF_HUB_OFFLINE=1, in this process."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return cache


# --- a local Hub ---------------------------------------------------------------------------

class FakeHub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.repos: dict[str, dict] = {}  # repo_id -> {private, sha, files: {path: bytes}, commits: [...]}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, sent the write token)
        self.validated_cards: list[str] = []
        self.tokens = {WRITE_TOKEN: "tester"}

    def add_repo(self, repo_id: str, files: dict[str, bytes], private: bool = False, gated: bool = False) -> None:
        self.repos[repo_id] = {"private": private, "gated": gated, "sha": COMMIT, "files": dict(files), "commits": []}


class Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args) -> None:
        pass

    def user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.server.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def repo_or_error(self, repo_id: str, revision: str | None = None) -> dict | None:
        repo = self.server.repos.get(repo_id)
        if repo is None or (repo["private"] and self.user() is None):
            self.reply(401 if self.user() is None else 404, {"error": "Repository not found"},
                       {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.get("gated") and self.user() is None:
            self.reply(403, {"error": "Access to this model is restricted"}, {"X-Error-Code": "GatedRepo"})
            return None
        if revision not in (None, "main", repo["sha"]):
            self.reply(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def route(self) -> None:
        path = unquote(urlparse(self.path).path)
        self.server.requests.append((self.command, path, self.user() is not None))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?", path):
            if repo := self.repo_or_error(m[1], m[2]):
                self.reply(200, {"id": m[1], "sha": repo["sha"], "private": repo["private"],
                                 "siblings": [{"rfilename": p} for p in repo["files"]]})
        elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            if repo := self.repo_or_error(m[1], m[2]):
                self.reply(200, [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                 for p, d in repo["files"].items()])
        elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            if repo := self.repo_or_error(m[1], m[2]):
                data = repo["files"].get(m[3])
                if data is None:
                    self.reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                else:
                    etag = f'"{hashlib.sha256(data).hexdigest()}"'
                    self.reply(200, raw=data, headers={"X-Repo-Commit": repo["sha"], "ETag": etag})
        elif path == "/api/repos/create":
            payload = json.loads(self.body())
            user = self.user()
            if user is None:
                return self.reply(401, {"error": "Invalid credentials"})
            repo_id = f"{payload.get('organization') or user}/{payload['name']}"
            if repo_id in self.server.repos:
                return self.reply(409, {"error": "You already created this model repo",
                                        "url": f"{self.server.endpoint}/{repo_id}"})
            self.server.add_repo(repo_id, {}, private=payload.get("visibility") == "private")
            self.server.repos[repo_id]["sha"] = hashlib.sha1(repo_id.encode()).hexdigest()
            self.reply(200, {"url": f"{self.server.endpoint}/{repo_id}"})
        elif path == "/api/validate-yaml":
            content = json.loads(self.body())["content"]
            self.server.validated_cards.append(content)
            try:
                ModelCard(content)  # parses the metadata, model-index included, as the Hub's own client does
            except (ValueError, yaml.YAMLError) as exc:
                return self.reply(400, {"errors": [{"message": str(exc)}]})
            self.reply(200, {"errors": [], "warnings": []})
        elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
            files = json.loads(self.body())["files"]
            if self.user() is None or self.repo_or_error(m[1]) is None:
                return self.reply(401, {"error": "Unauthorized"}) if self.user() is None else None
            modes = {f["path"]: "lfs" if f["path"].endswith(".safetensors") else "regular" for f in files}
            self.reply(200, {"files": [{"path": f["path"], "uploadMode": modes[f["path"]], "shouldIgnore": False,
                                        "oid": None} for f in files]})
        elif m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            objects = json.loads(self.body())["objects"]
            self.reply(200, {"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"], "authenticated": True,
                 "actions": {"upload": {"href": f"{self.server.endpoint}/lfs-upload/{o['oid']}"}}} for o in objects]})
        elif m := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path):
            data = self.body()
            assert hashlib.sha256(data).hexdigest() == m[1]
            self.server.lfs[m[1]] = data
            self.reply(200, {})
        elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
            if self.user() is None:
                return self.reply(401, {"error": "Unauthorized"})
            repo = self.repo_or_error(m[1])
            if repo is None:
                return
            lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
            commit = {"message": lines[0]["value"]["summary"], "files": {}}
            for line in lines[1:]:
                v = line["value"]
                if line["key"] == "file":
                    commit["files"][v["path"]] = base64.b64decode(v["content"])
                elif line["key"] == "lfsFile":
                    commit["files"][v["path"]] = self.server.lfs[v["oid"]]
            repo["files"].update(commit["files"])
            repo["commits"].append(commit)
            repo["sha"] = hashlib.sha1(repr(sorted(repo["files"].items())).encode()).hexdigest()
            self.reply(200, {"commitUrl": f"{self.server.endpoint}/{m[1]}/commit/{repo['sha']}",
                             "commitOid": repo["sha"], "pullRequestUrl": None})
        else:
            self.reply(404, {"error": f"FakeHub does not speak {self.command} {path}"})

    do_GET = do_HEAD = do_POST = do_PUT = route


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    """A running FakeHub that this process's huggingface_hub talks to, with an empty cache and no token."""
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    yield server
    server.shutdown()
    server.server_close()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """charrnn as a user runs it: a fresh process, so HF_* variables are read at import as they are for real."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True, text=True, timeout=120,
                          env=clean | {"HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)} | env)


# --- the Space ------------------------------------------------------------------------------

def test_readme_front_matter_is_a_valid_gradio_space_config():
    from huggingface_hub import SpaceCard

    data = SpaceCard.load(ROOT / "README.md").data  # raises on YAML the Hub would refuse
    pinned = re.search(r"^gradio(?:\[oauth\])?==(\S+)\s*$", (ROOT / "requirements.txt").read_text(), re.M)
    assert data.sdk == "gradio" and pinned and data.sdk_version == pinned[1]
    assert (ROOT / data.app_file).is_file() and data.app_file == "app.py"
    assert isinstance(data.python_version, str) and re.fullmatch(r"3\.\d+", data.python_version)
    assert data.title and data.emoji and len(data.short_description) <= 60
    assert data.colorFrom in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert data.colorTo in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert data.models is None  # the app loads no Hub model at start: the shipped models are files in the Space


# --- model card -----------------------------------------------------------------------------

def test_card_metadata_is_proper_hub_metadata_and_round_trips(tmp_path):
    _, directory = checkpoint(tmp_path, val_loss=1.2345, base_model="someone/char-rnn-poems")
    card = ModelCard.load(directory / "README.md")
    data = card.data
    assert data.library_name == "charrnn"
    assert {"char-rnn", "text-generation"} <= set(data.tags)
    assert data.pipeline_tag == "text-generation"
    assert data.base_model == "someone/char-rnn-poems"
    assert data.to_dict()["corpus"] == "fox.txt"
    # The validation loss is a real model-index (not a 'model_index' key the Hub ignores) and parses back.
    text = (directory / "README.md").read_text()
    assert "\nmodel-index:" in text and "model_index" not in text
    results = {r.metric_type: r for r in data.eval_results}
    assert results["loss"].metric_value == 1.2345
    assert results["bpc"].metric_value == pytest.approx(1.2345 / 0.6931471805599453, abs=1e-4)
    assert results["loss"].task_type == "text-generation" and results["loss"].dataset_name == "fox.txt"
    as_written = {k.replace("_", "-") if k == "model_index" else k: v for k, v in data.to_dict().items()}
    assert ModelCardData(**as_written).eval_results


def test_card_base_model_only_when_it_is_a_hub_id(tmp_path):
    local_base = tmp_path / "my" / "base"
    local_base.mkdir(parents=True)
    for base in ("fairy-tales", str(local_base)):
        _, directory = checkpoint(tmp_path, name=f"c{len(base)}", base_model=base)
        data = ModelCard.load(directory / "README.md").data
        assert data.base_model is None  # the Hub refuses a base_model that is not a model id
        assert base in (directory / "README.md").read_text()  # the body still says what it was fine-tuned from


def test_card_without_evaluation_has_no_model_index(tmp_path):
    _, directory = checkpoint(tmp_path, val_loss=None)
    text = (directory / "README.md").read_text()
    assert "model-index" not in text and "model_name" not in text
    assert ModelCard.load(directory / "README.md").data.library_name == "charrnn"


def test_card_info_round_trips_through_the_training_state_under_the_older_names():
    info = CardInfo(name="fox", corpus="fox.txt", notes=["A note."], val_loss=1.25, val_scope="over all 9",
                    val_losses={"a": 1.0, "b": 1.5},
                    samples=[{"temperature": 0.5, "seed": 1, "prompt": "", "text": "x"}])
    meta = info.to_meta()
    assert meta["full_val_loss"] == 1.25 and "val_loss" not in meta  # what older checkpoints named it
    assert "command" not in meta and "base_model" not in meta  # None is left out: older versions read it as missing
    assert json.loads(json.dumps(meta)) == meta and CardInfo.from_meta(meta) == info
    # An older checkpoint's plain dict, with a key no version knows and a None, reads as the same.
    assert CardInfo.from_meta(meta | {"unknown": 1, "command": None}) == info
    assert info.unmeasured() == CardInfo(name="fox", corpus="fox.txt", notes=["A note."])
    assert model_card(tiny_model(), CardInfo.from_meta({})) == model_card(tiny_model(), CardInfo())


# --- loading from a snapshot and the cache --------------------------------------------------

def test_save_pretrained_round_trips_through_a_hub_snapshot_layout(tmp_path, offline_cache):
    model = tiny_model()
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    snapshot = cache_repo(offline_cache, "owner/fox", {p.name: p.read_bytes() for p in saved.iterdir()})
    assert CharRNN.from_pretrained(str(snapshot)).config == model.config
    for loaded in (CharRNN.from_pretrained(str(snapshot)), CharRNN.from_pretrained("owner/fox"),
                   load_model("owner/fox", device="cpu")):
        assert same_weights(loaded, model)


def test_load_by_repo_id_offline_from_cache(tmp_path, offline_cache):
    model, directory = checkpoint(tmp_path)
    cache_repo(offline_cache, "owner/fox", model_files(directory))
    other = "fedcba9876543210fedcba9876543210fedcba98"
    bigger = tiny_model(hidden=24, seed=1)
    save_checkpoint(tmp_path / "v2", bigger, model_card(bigger, CardInfo()))
    cache_repo(offline_cache, "owner/fox", model_files(tmp_path / "v2"), revision="v2", commit=other)

    loaded = load_model("owner/fox", device="cpu")  # what the app calls with the picker's repo id
    assert same_weights(loaded, model) and loaded.source == "owner/fox"
    assert load_model("owner/fox", revision="v2", device="cpu").hidden_size == 24
    assert load_model("owner/fox", revision=other, device="cpu").hidden_size == 24
    assert load_model("owner/fox@v2", device="cpu").hidden_size == 24  # one text box (the app's) can name a revision
    with pytest.raises(CheckpointError, match=r"names revision 'v2' but revision 'main' was also given"):
        load_model("owner/fox@v2", revision="main")
    with pytest.raises(CheckpointError, match=r"owner/fox at revision 'v3' is not in the local cache, "
                                              r"and HF_HUB_OFFLINE=1 forbids downloading it"):
        load_model("owner/fox", revision="v3")
    with pytest.raises(CheckpointError, match=r"^someone/else is not in the local cache, "
                                              r"and HF_HUB_OFFLINE=1 forbids downloading it$"):
        load_model("someone/else")


def test_app_picker_loads_a_repo_id_offline_from_cache(tmp_path, offline_cache):
    import gradio as gr

    from webapp.models import Studio

    model, directory = checkpoint(tmp_path)
    cache_repo(offline_cache, "owner/fox", model_files(directory))
    studio = Studio(tmp_path / "no-shipped-models", device="cpu")
    assert same_weights(studio.load(None, "owner/fox"), model)  # the Generate tab's "Hub repo id" box
    assert same_weights(studio.load(None, "owner/fox@main"), model)
    with pytest.raises(gr.Error, match="owner/other is not in the local cache, "
                                       "and HF_HUB_OFFLINE=1 forbids downloading it"):
        studio.load(None, "owner/other")


def test_cli_samples_a_repo_id_offline_from_a_warm_cache(tmp_path):
    model, directory = checkpoint(tmp_path)
    cache = tmp_path / "hub-cache"
    cache_repo(cache, "owner/fox", model_files(directory))
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf-home")}
    run = cli("sample", "owner/fox", "--prompt", "the ", "--length", "60", "--seed", "3", "--device", "cpu", env=env)
    assert run.returncode == 0, run.stderr
    expected = sample(model, "the ", SampleSettings(length=60, seed=3).checked(len(model.vocab)))[0]
    assert run.stdout == "the " + expected + "\n"

    missing = cli("sample", "owner/nothing", env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == ("charrnn: error: owner/nothing is not in the local cache, "
                                      "and HF_HUB_OFFLINE=1 forbids downloading it")


@pytest.mark.parametrize("case, files, message", [
    ("wrong config", {"config.json": json.dumps({"model_type": "gpt2", "n_layer": 12}).encode()},
     r"^owner/repo is not a charrnn model: its config.json has no vocabulary$"),
    ("no weights", "config-only", r"^owner/repo is not a charrnn model: it has no model.safetensors$"),
    ("mismatch", "mismatch", r"^owner/repo: the weights do not match config.json \(size mismatch for .*"),
    ("pickle only", "pickle", r"^owner/repo holds only pickle weights \(pytorch_model.bin\); "
                              r"charrnn loads model.safetensors only, "
                              r"because unpickling a downloaded file can run arbitrary code"),
    ("bad config values",
     {"config.json": json.dumps({"vocab": ["\ufffd", "a"], "hidden_size": -3}).encode(), "model.safetensors": b"x"},
     r"^owner/repo is not a loadable charrnn model: config.json: hidden_size must be a whole number"),
])
def test_cached_repo_that_is_not_a_charrnn_model_is_refused_clearly(tmp_path, offline_cache, case, files, message):  # noqa: ARG001
    _, directory = checkpoint(tmp_path)
    good = model_files(directory)
    if files == "config-only":
        files = {"config.json": good["config.json"]}
    elif files == "mismatch":
        config = json.loads(good["config.json"]) | {"hidden_size": 32}
        files = good | {"config.json": json.dumps(config).encode()}
    elif files == "pickle":
        files = {"config.json": good["config.json"], "pytorch_model.bin": b"\x80\x04not really a pickle"}
    cache_repo(offline_cache, "owner/repo", files)
    with pytest.raises(CheckpointError, match=message):
        load_model("owner/repo")


def test_revision_on_a_local_directory_is_refused(tmp_path):
    _, directory = checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="a revision applies to Hub repo ids only"):
        load_model(directory, revision="main")


# --- downloading from a (local) Hub ---------------------------------------------------------

def test_download_by_repo_id_then_offline_from_the_same_cache(tmp_path, hub, monkeypatch):
    model, directory = checkpoint(tmp_path)
    hub.add_repo("owner/fox", model_files(directory) | {"training_state/state.safetensors": b"big"})
    assert same_weights(load_model("owner/fox", device="cpu"), model)
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path}
    assert fetched == {"config.json", "model.safetensors", "README.md"}  # only what loading needs
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    assert same_weights(load_model("owner/fox", device="cpu"), model)
    assert hub.requests == []


def test_pickle_only_repo_is_refused_without_downloading_the_pickle(tmp_path, hub):
    _, directory = checkpoint(tmp_path)
    hub.add_repo("owner/pickled", {"config.json": model_files(directory)["config.json"],
                                   "pytorch_model.bin": b"\x80\x04evil"})
    with pytest.raises(CheckpointError, match=r"^owner/pickled holds only pickle weights \(pytorch_model.bin\); "
                                              r".*it was not downloaded\)$"):
        load_model("owner/pickled")
    assert not any("pytorch_model.bin" in path for _, path, _ in hub.requests if "/resolve/" in path)
    assert not list(Path(constants.HF_HUB_CACHE).rglob("pytorch_model.bin"))


def test_repo_not_found_private_and_missing_revision_messages(tmp_path, hub, monkeypatch):
    _, directory = checkpoint(tmp_path)
    hub.add_repo("owner/secret", model_files(directory), private=True)
    with pytest.raises(CheckpointError, match=r"^owner/nope: no such model on the Hub, or it is private "
                                              r"and no token is set \(set HF_TOKEN or run `hf auth login`\)$"):
        load_model("owner/nope")
    with pytest.raises(CheckpointError, match=r"^owner/secret: no such model on the Hub, "
                                              r"or it is private and no token is set"):
        load_model("owner/secret")
    hub.add_repo("owner/gated", model_files(directory), gated=True)
    with pytest.raises(CheckpointError, match=r"^owner/gated is gated: accept its terms on the Hub, "
                                              r"then set HF_TOKEN or run `hf auth login`$"):
        load_model("owner/gated")
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    assert load_model("owner/secret", device="cpu").hidden_size == 16  # the token from HF_TOKEN reaches the Hub
    with pytest.raises(CheckpointError, match=r"^owner/nope: no such model on the Hub, "
                                              r"or it is private and your token cannot read it$"):
        load_model("owner/nope")
    with pytest.raises(CheckpointError, match=r"^owner/secret has no revision 'v9' "
                                              r"\(a branch, tag or commit on the Hub\)$"):
        load_model("owner/secret", revision="v9")


@pytest.mark.usefixtures("hub")
def test_unreachable_hub_and_not_cached(monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(CheckpointError, match=r"^owner/fox is not in the local cache, "
                                              r"and the Hub cannot be reached \(offline\?\)$"):
        load_model("owner/fox")


# --- pushing ---------------------------------------------------------------------------------

def test_push_uploads_the_model_files_and_card_metadata(tmp_path, hub, monkeypatch):
    model, directory = checkpoint(tmp_path, name="fox-model", val_loss=1.25)
    (directory / INDEX).write_bytes(b"hashed 20-grams")
    (directory / "training_state").mkdir()
    (directory / "training_state" / "state.safetensors").write_bytes(b"optimizer moments")
    url = push_to_hub(directory, "tester/fox", token=WRITE_TOKEN, private=True, message="first fox")
    assert url == f"{hub.endpoint}/tester/fox"
    repo = hub.repos["tester/fox"]
    assert repo["private"] is True
    assert [c["message"] for c in repo["commits"]] == ["first fox"]
    assert set(repo["files"]) == {"config.json", "model.safetensors", "README.md", INDEX}  # no training_state
    for name, data in model_files(directory).items() | {INDEX: b"hashed 20-grams"}.items():
        assert repo["files"][name] == data
    assert repo["files"]["model.safetensors"] in hub.lfs.values()  # went through the LFS upload, as on the Hub
    assert hub.validated_cards and "library_name: charrnn" in hub.validated_cards[0]
    assert all(sent_token for method, path, sent_token in hub.requests if path.startswith("/api/"))
    # And back: the pushed (private) repo loads by its id with a token.
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    assert same_weights(load_model("tester/fox", device="cpu"), model)


def test_push_without_a_card_makes_one_and_leaves_the_directory_alone(tmp_path, hub):
    model, directory = checkpoint(tmp_path)
    (directory / "README.md").unlink()
    before = sorted(p.name for p in directory.iterdir())
    push_to_hub(directory, "tester/plain", token=WRITE_TOKEN)
    assert sorted(p.name for p in directory.iterdir()) == before
    assert ModelCard(hub.repos["tester/plain"]["files"]["README.md"].decode()).data.library_name == "charrnn"
    assert same_weights(load_model("tester/plain", device="cpu"), model)


def test_push_errors(tmp_path, hub, monkeypatch):
    _, directory = checkpoint(tmp_path)
    with pytest.raises(HubError, match=r"^pushing needs a Hugging Face token with write access: "
                                       r"set HF_TOKEN, run `hf auth login`, or give one$"):
        push_to_hub(directory, "tester/fox")
    assert hub.requests == []
    bad_token = "hf_not_a_real_token_987654321"
    with pytest.raises(HubError, match=r"^the Hub refused the token \(invalid or expired\)") as refused:
        push_to_hub(directory, "tester/fox", token=bad_token)
    assert bad_token not in str(refused.value)
    with pytest.raises(HubError, match=r"^that token has characters a Hugging Face token never has"):
        push_to_hub(directory, "tester/fox", token="hf_…")  # an ellipsis pasted from a placeholder
    with pytest.raises(HubError, match=r"is not a valid Hub repo name"):
        push_to_hub(directory, "tester/bad name!", token=WRITE_TOKEN)
    with pytest.raises(HubError, match=r"no such checkpoint directory"):
        push_to_hub(tmp_path / "missing", "tester/fox", token=WRITE_TOKEN)
    hub.add_repo("tester/public", {})
    with pytest.raises(HubError, match=r"^tester/public already exists and is public; "
                                       r"a push does not change its visibility"):
        push_to_hub(directory, "tester/public", token=WRITE_TOKEN, private=True)
    assert hub.repos["tester/public"]["commits"] == []
    named_only = push_to_hub(directory, "just-a-name", token=WRITE_TOKEN)  # the token's own account
    assert named_only == f"{hub.endpoint}/tester/just-a-name"
    assert "model.safetensors" in hub.repos["tester/just-a-name"]["files"]
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubError, match=r"^could not reach the Hub to push tester/fox \(ConnectError\)$"):
        push_to_hub(directory, "tester/fox", token=WRITE_TOKEN)
    (directory / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(HubError, match=r"^not pushing: .*model.safetensors is damaged or truncated"):
        push_to_hub(directory, "tester/fox", token=WRITE_TOKEN)
    assert "tester/fox" not in hub.repos


def test_cli_push_against_a_local_endpoint(tmp_path, hub, monkeypatch):
    model, directory = checkpoint(tmp_path, name="fox-cli")
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "cli-home"),
           "HF_HUB_CACHE": str(tmp_path / "cli-cache"), "HF_TOKEN": WRITE_TOKEN}
    run = cli("push", str(directory), "--repo", "tester/fox-cli", "--private", "--message", "from the CLI", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{hub.endpoint}/tester/fox-cli"
    assert WRITE_TOKEN not in run.stdout + run.stderr
    repo = hub.repos["tester/fox-cli"]
    assert repo["private"] and repo["commits"][0]["message"] == "from the CLI"
    assert repo["files"]["model.safetensors"] == (directory / "model.safetensors").read_bytes()

    # The pushed (private) model downloads by repo id into the cache, then the CLI samples it offline from there.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    assert same_weights(load_model("tester/fox-cli", device="cpu"), model)
    offline = cli("sample", "tester/fox-cli", "--prompt", "the ", "--length", "40", "--seed", "5", "--device", "cpu",
                  env=env | {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    expected = "the " + sample(model, "the ", SampleSettings(length=40, seed=5).checked(len(model.vocab)))[0] + "\n"
    assert (offline.returncode, offline.stdout) == (0, expected), offline.stderr

    refused = cli("push", str(directory), "--repo", "tester/fox-cli", env=env | {"HF_TOKEN": "hf_wrong_token_0000"})
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("charrnn: error: the Hub refused the token (invalid or expired)")
    assert "hf_wrong_token_0000" not in refused.stderr


def test_weights_that_do_not_match_are_named(tmp_path):
    _, directory = checkpoint(tmp_path)
    tensors = {k: v for k, v in tiny_model().state_dict().items() if not k.startswith("head.")}
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"the weights do not match config.json \(.*head"):
        load_model(directory)


# --- the app's "Push to Hub" -----------------------------------------------------------------

def test_app_push_to_hub_uses_the_token_for_that_call_only(tmp_path, hub):
    import gradio as gr

    from app import build_app
    from webapp.session import Session, SessionModel

    shipped_model = tiny_model()
    save_checkpoint(tmp_path / "shipped" / "fairy-tales", shipped_model, model_card(shipped_model, CardInfo()))
    demo = build_app(tmp_path / "shipped")
    push = next(f for f in demo.fns.values() if f.api_name == "push").fn
    token_box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "push-token")
    assert token_box.type == "password"
    visitor = Session(tmp_path, "visitor")
    try:
        model, trained = checkpoint(tmp_path, name="mine")
        visitor.add_model(SessionModel("mine", trained, "fairy-tales"))
        with pytest.raises(gr.Error, match="Only a model you trained in this session can be pushed"):
            push("fairy-tales", "tester/x", WRITE_TOKEN, True, visitor)
        with pytest.raises(gr.Error, match="pushing needs a Hugging Face token with write access"):
            push("mine", "tester/x", "", True, visitor)
        message, token_after = push("mine", "tester/app-model", WRITE_TOKEN, True, visitor)
        assert token_after == "" and WRITE_TOKEN not in message  # the box is emptied, the token never echoed
        assert f"{hub.endpoint}/tester/app-model" in message and hub.repos["tester/app-model"]["private"]
        pushed = hub.repos["tester/app-model"]["files"]["model.safetensors"]
        assert pushed == (trained / "model.safetensors").read_bytes()
        signed_in = gr.OAuthToken(token=WRITE_TOKEN, scope="openid profile write-repos", expires_at=0)
        message, _ = push("mine", "tester/signed-in", "", False, visitor, signed_in)  # the LoginButton's token
        assert "tester/signed-in" in message and not hub.repos["tester/signed-in"]["private"]
        assert WRITE_TOKEN not in repr(visitor.__dict__)  # nothing kept in the session
    finally:
        visitor.close()
