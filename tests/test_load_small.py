"""A small load test: five visitors generating at once while a sixth fine-tunes.

Zero errors, every request gets its full length, and a seed gives the same text under load
as alone (visitors' generations do not leak into each other). bench/load.py is the big
version with timings.
"""

from __future__ import annotations

import threading

import pytest
from app_testing import shared_app, story_text

from webapp import limits

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

CLIENTS, REPEATS, LENGTH = 5, 3, 200


def generate(client: Client, prompt: str, seed: int) -> str:
    job = client.submit(prompt, 0.8, LENGTH, str(seed), "fairy-tales", "", 0, 1.0, api_name="/generate")
    for _ in job:  # stream it, as a browser would
        pass
    return job.result()[0]


def test_five_visitors_generate_while_one_fine_tunes(tmp_path):
    url = shared_app()
    # All in the vocabulary.
    prompts = ["once upon a time", "a king who had", "three daughters", "the sun itself", "in her face"]
    alone = {(k, r): generate(Client(url, verbose=False), prompts[k], 100 * k + r)
             for k in range(CLIENTS) for r in range(REPEATS)}

    upload = tmp_path / "busy-day.txt"
    upload.write_text(story_text(200, seed=8))
    trainer = Client(url, verbose=False)
    training = trainer.submit(handle_file(str(upload)), "fairy-tales", limits.DEFAULT_SIZE_PRESET, 1,
                              "as the base model", 0, 60, api_name="/train")
    texts: dict[tuple[int, int], str] = {}
    errors: list[str] = []
    start = threading.Barrier(CLIENTS)

    def visitor(k: int) -> None:
        client = Client(url, verbose=False)
        start.wait()
        for r in range(REPEATS):
            try:
                texts[k, r] = generate(client, prompts[k], 100 * k + r)
            except Exception as exc:  # collected: the assertion below lists them all
                errors.append(f"visitor {k}, request {r}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=visitor, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    status = training.result(timeout=300)[0]

    assert errors == []
    assert len(texts) == CLIENTS * REPEATS
    for key, text in texts.items():
        assert len(text) == len(prompts[key[0]]) + LENGTH
        assert text == alone[key], f"visitor {key} got a different text under load than alone with the same seed"
    assert "Done: busy-day" in status
