"""Every refusal a visitor can get over the HTTP API comes in the request's language: a bad input to each
endpoint with Accept-Language zh-CN answers in Chinese, and the same input without it answers in English.

The private events the page calls by fn_index (pick_branch, undo_branch) are sent that way too.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from charrnn.text import mostly_chinese

gradio_client = pytest.importorskip("gradio_client")

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
ROWS = {"headers": ["feature", "rank", "layer", "unit", "state", "r"], "data": [["x", 1, "a", "b", "c", 0.5]],
        "metadata": None}
GENERATE = dict(prompt="Once", temperature=0.8, length=20, seed="1", model="fairy-tales", hub_repo_id="", top_k=0,
                top_p=1.0)


def _with(**changed: object) -> dict:
    return GENERATE | changed


# (case, endpoint, keyword arguments (file=PNG: an uploaded PNG image), a fragment of the Chinese answer)
CASES = [
    ("generate: length 20.5", "/generate", _with(length=20.5), "长度必须是整数"),
    ("generate: temperature -1", "/generate", _with(temperature=-1), "温度：-1 超出范围"),
    ("generate: stop at a list", "/generate", _with(stop_at=["."]), "停止于必须是"),
    ("generate: unknown model", "/generate", _with(model="nope"), "没有名为"),
    ("generate on enter: seed 1.5", "/generate_on_enter", _with(seed="1.5"), "随机种子必须是整数"),
    ("branch: nothing generated", "/branch",
     dict(prompt="", text="", position=0, alternative="e", temperature=0.8, length=20, seed="1",
          model="fairy-tales", hub_repo_id="", top_k=0, top_p=1.0), "没有可以分支的"),
    ("influence: nothing generated", "/influence",
     dict(prompt="", text="", position=0, model="fairy-tales", hub_repo_id=""), "没有可以解释的"),
    ("inspect: nothing generated", "/inspect", dict(prompt="", text="", model="fairy-tales", hub_repo_id=""),
     "没有可以检视的"),
    ("originality: nothing generated", "/originality", dict(prompt="", text="", model="fairy-tales", hub_repo_id=""),
     "没有可以检查的"),
    ("temperatures: too long a prompt", "/temperatures",
     dict(prompt="x" * 200_000, length=20, seed="1", model="fairy-tales", hub_repo_id="", top_k=0, top_p=1.0),
     "个字符"),
    ("browser model: unknown model", "/browser_model", dict(enabled=True, model="nope", hub_repo_id=""), "没有名为"),
    ("push: a shipped model", "/push", dict(name="fairy-tales", repo_id="a/b", token_text="x", make_private=True),
     "只能推送"),
    ("read upload: a PNG", "/read_upload", dict(file=PNG, base="fairy-tales", fold="keep Unicode"), "未能完成"),
    ("read upload base: a link", "/read_upload_base",
     dict(file={"path": "http://example.com/a.txt", "meta": {"_type": "gradio.FileData"}}, base="fairy-tales",
          fold="keep Unicode"), "不会抓取链接"),
    ("read upload fold: unknown fold", "/read_upload_fold", dict(file=None, base="fairy-tales", fold="sideways"),
     "必须是"),
    ("suggest base: a PNG", "/suggest_base", dict(file=PNG, base="fairy-tales"), "未能完成"),
    ("train: unknown size", "/train", dict(file=None, base="fairy-tales", size="huge", minutes=1,
                                           fold="keep Unicode", lr=0, max_steps=0), "必须是"),
    ("neurons: layer 9", "/neurons", dict(text="some text", layer=9, unit=0, state="cell state c",
                                          model="fairy-tales", hub_repo_id=""), "必须是"),
    ("neurons: no text", "/neurons", dict(text="", layer=1, unit=0, state="cell state c", model="fairy-tales",
                                          hub_repo_id=""), "请输入或粘贴"),
    ("find cells: a short text", "/find_cells", dict(text="short", model="fairy-tales", hub_repo_id=""), "至少"),
    ("pick cell: a bad row", "/pick_cell", dict(rows=ROWS), "一行"),
    ("neurons of picked cell: a bad state", "/neurons_of_picked_cell",
     dict(text="some text", layer=1, unit=0, state="x", model="fairy-tales", hub_repo_id=""), "必须是"),
    ("compare: no model", "/compare", dict(prompt="Once", temperature=0.8, length=20, seed="1", models=[],
                                           hub_repo_ids="", top_k=0, top_p=1.0), "请选择"),
    ("compare: one model twice", "/compare", dict(prompt="Once", temperature=0.8, length=20, seed="1",
                                                  models=["fairy-tales"], hub_repo_ids="fairy-tales", top_k=0,
                                                  top_p=1.0), "选了两次"),
    ("score: no text", "/score", dict(text="", file=None, models=["fairy-tales"], hub_repo_ids=""), "没有要评分的"),
    ("score: one character", "/score", dict(text="a", file=None, models=["fairy-tales"], hub_repo_ids=""), "太短"),
]
PRIVATE = [  # (case, event, data, event data, a fragment of the Chinese answer)
    ("pick branch: no position", "pick_branch", ["text", []], {"char": "e"}, "分支需要"),
    ("undo branch: nothing to undo", "undo_branch", [[]], None, "没有可以撤销的"),
]


@pytest.fixture(scope="module")
def app_url() -> str:
    from app_testing import shared_app

    return shared_app()


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("uploads") / "picture.txt"
    path.write_bytes(PNG)
    return str(path)


LANGUAGES = {"zh": "zh-CN,zh;q=0.9", "en": "en-US,en;q=0.9"}


@pytest.fixture(scope="module")
def clients(app_url):
    """A client per language (a client reads the app's API once, which takes longer than a refusal)."""
    from gradio_client import Client

    made = {lang: Client(app_url, verbose=False, headers={"Accept-Language": header})
            for lang, header in LANGUAGES.items()}
    yield made
    for client in made.values():
        client.close()


def refusal(client, endpoint: str, kwargs: dict, png: str) -> str:
    """The message of the app's refusal of kwargs at endpoint, asked for in the client's language."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    if kwargs.get("file") == PNG:
        kwargs = kwargs | {"file": handle_file(png)}
    with pytest.raises(AppError) as refused:
        client.predict(**kwargs, api_name=endpoint)
    return str(refused.value.message)


def private_refusal(url: str, event: str, data: list, event_data: dict | None, language: str) -> str:
    """The error a private event answers when sent by fn_index over raw HTTP, as a hostile client can."""
    import httpx

    dependencies = httpx.get(f"{url}config", timeout=30).json()["dependencies"]
    index = next(d.get("id", i) for i, d in enumerate(dependencies) if d.get("api_name") == event)
    session = f"i18n{random.randrange(10**12)}"
    headers = {"Accept-Language": language}
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": event_data, "trigger_id": None}
    httpx.post(f"{url}gradio_api/queue/join", json=body, headers=headers, timeout=30).raise_for_status()
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, headers=headers,
                      timeout=60) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert not message.get("success"), message
                return message["output"]["error"]
    raise AssertionError("the event stream ended without a result")


def chinese(message: str) -> bool:
    """Whether a message reads as Chinese: its lead, past a quoted value or a file's name, is Chinese words."""
    lead = re.sub(r"'[^']*'|\"[^\"]*\"|[A-Za-z0-9_.-]+\.txt", "", message)[:12]
    return sum(mostly_chinese(c) for c in lead) >= 2


@pytest.mark.parametrize(("case", "endpoint", "kwargs", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_each_endpoints_refusal_follows_accept_language(clients, png, case, endpoint, kwargs, fragment):  # noqa: ARG001
    zh = refusal(clients["zh"], endpoint, kwargs, png)
    assert chinese(zh) and fragment in zh, zh
    en = refusal(clients["en"], endpoint, kwargs, png)
    assert not mostly_chinese(en), en


@pytest.mark.parametrize(("case", "event", "data", "event_data", "fragment"), PRIVATE, ids=[c[0] for c in PRIVATE])
def test_private_events_refuse_in_the_visitors_language(app_url, case, event, data, event_data, fragment):  # noqa: ARG001
    zh = private_refusal(app_url, event, data, event_data, "zh-CN")
    assert chinese(zh) and fragment in zh, zh
    assert not mostly_chinese(private_refusal(app_url, event, data, event_data, "en"))


def count_chinese(url: str, png: str) -> tuple[int, int]:
    """(refusals in Chinese, refusals) over every case above, for a report."""
    from gradio_client import Client

    client = Client(url, verbose=False, headers={"Accept-Language": LANGUAGES["zh"]})
    answers = [refusal(client, endpoint, kwargs, png) for _, endpoint, kwargs, _ in CASES]
    answers += [private_refusal(url, event, data, event_data, "zh-CN") for _, event, data, event_data, _ in PRIVATE]
    return sum(chinese(a) for a in answers), len(answers)


if __name__ == "__main__":  # python tests/test_i18n_api.py: the count, and each answer
    import sys
    import tempfile
    from pathlib import Path

    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
    from app_testing import shared_app

    picture = Path(tempfile.mkdtemp()) / "picture.txt"
    picture.write_bytes(PNG)
    url = shared_app()
    from gradio_client import Client

    zh_client = Client(url, verbose=False, headers={"Accept-Language": LANGUAGES["zh"]})
    for _, endpoint, kwargs, _ in CASES:
        print(endpoint, "|", refusal(zh_client, endpoint, kwargs, str(picture)))
    for _, event, data, event_data, _ in PRIVATE:
        print(event, "|", private_refusal(url, event, data, event_data, "zh-CN"))
    zh, total = count_chinese(url, str(picture))
    print(f"Chinese: {zh} of {total}")


def _private_session(url: str, session: str, event: str, data: list, event_data: dict | None = None) -> dict:
    """One call of a private event by fn_index in session: the process_completed message, and its size in bytes."""
    import httpx

    dependencies = httpx.get(f"{url}config", timeout=30).json()["dependencies"]
    index = next(d.get("id", i) for i, d in enumerate(dependencies) if d.get("api_name") == event)
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": event_data, "trigger_id": None}
    httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=30).raise_for_status()
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, timeout=60) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                return message | {"bytes": len(line)}
    raise AssertionError("the event stream ended without a result")


def test_picks_and_undos_by_fn_index_stay_bounded_and_generate_nothing(app_url):
    """A client may send the page's private pick_branch and undo_branch by fn_index: 25 picks keep the
    last MAX_BRANCH_HISTORY texts (20 undos succeed, the 21st has nothing left), each answer is a few
    small updates whatever the text's length, and a pick alone runs no generation (the page chains it)."""
    from app_testing import shared_demo

    from webapp import limits

    demo = shared_demo()
    generation = [fn for fn in demo.fns.values() if fn.api_name in ("branch", "generate", "generate_on_enter")]
    runs_before = [fn.total_runs for fn in generation]
    session = f"picks{random.randrange(10**12)}"
    longest = "a" * limits.MAX_VIEW_CHARS
    for i in range(25):
        picked = _private_session(app_url, session, "pick_branch", [f"{i:02}:{longest}"[: limits.MAX_VIEW_CHARS], None],
                                  {"position": 3, "char": "e"})
        assert picked["success"] and picked["bytes"] < 1_000, picked  # the texts stay on the server
        assert picked["output"]["data"][:2] == [3, "e"]
    assert [fn.total_runs for fn in generation] == runs_before
    undone = [_private_session(app_url, session, "undo_branch", [None]) for _ in range(limits.MAX_BRANCH_HISTORY + 1)]
    assert all(u["success"] for u in undone[:-1]) and not undone[-1]["success"]
    assert [u["output"]["data"][0][:3] for u in undone[:3]] == ["24:", "23:", "22:"]
    assert undone[limits.MAX_BRANCH_HISTORY - 1]["output"]["data"][0].startswith("05:")  # the oldest kept
    assert undone[-1]["output"]["error"] == "There is no branch to undo."
