"""Seeing inside a model: probabilities, activations, the cells that track text features, temperatures, and the
app's views."""

import random
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from charrnn.checkpoint import load_model, save_checkpoint
from charrnn.engine import sample, stream
from charrnn.insight import (
    activations,
    correlations,
    find_cells,
    rank_cells,
    score_text,
    temperature_sweep,
    text_features,
)
from charrnn.model import CharRNN
from charrnn.originality import build_index
from charrnn.sampling import SampleSettings
from charrnn.train import TrainConfig, train
from charrnn.vocab import Vocab
from webapp.insight_box import InsightViews
from webapp.neurons_tab import NeuronViews

TEXT = 'She said "come here" and he came.\nThen "no, not now" was all.\n\nHe LAUGHED at it.\n'


def tiny(num_layers: int = 2, cell: str = "lstm", seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(list(Vocab.build([TEXT]).chars), cell=cell, num_layers=num_layers, hidden_size=12,
                   embedding_dim=6).eval()


def test_scoring_a_generated_text_gives_the_probabilities_the_sampler_saw():
    model = tiny()
    for prompt in ("She said", ""):
        settings = SampleSettings(length=60, temperature=1.0, seed=7).checked(len(model.vocab))
        streamed = list(stream(model, prompt, settings))
        scored = score_text(model, "".join(s.char for s in streamed), prompt)
        assert [s.char for s in scored] == [s.char for s in streamed]
        assert max(abs(a.prob - b.prob) for a, b in zip(scored, streamed)) < 1e-5
        assert [c for c, _ in scored[10].alternatives] == [c for c, _ in streamed[10].alternatives]
        assert all(len(s.alternatives) == 5 and s.alternatives[0][1] >= s.alternatives[-1][1] for s in scored)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_activations_are_the_networks_own_states(cell):
    model = tiny(num_layers=2, cell=cell)
    acts = activations(model, TEXT)
    assert acts.h.shape == (len(TEXT), 2, 12)
    with torch.no_grad():
        out, state = model.rnn(model.embedding(model.vocab.encode(TEXT)[None]))
    np.testing.assert_allclose(acts.h[:, -1], out[0].numpy(), atol=1e-5)  # top layer, every step
    if cell == "lstm":
        h_n, c_n = state
        np.testing.assert_allclose(acts.h[-1], h_n[:, 0].numpy(), atol=1e-5)  # every layer, last step
        np.testing.assert_allclose(acts.c[-1], c_n[:, 0].numpy(), atol=1e-5)
        assert acts.c.shape == acts.h.shape
    else:
        assert acts.c is None and acts.kinds() == ["h"]
        with pytest.raises(ValueError, match="no state 'c'"):
            acts.of("c")


def test_text_features_mark_quotes_lines_words_newlines_and_capitals():
    text = 'a "Bc" d\nef\n\n"g\n\nh'
    f = text_features(text)
    # A blank line closes a quote.
    assert f["inside quotes"].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert f["position in line"].tolist()[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 0]
    assert f["inside a word"].tolist()[:6] == [1, 0, 0, 1, 1, 0]
    assert f["just after a newline"].tolist()[8:12] == [1, 0, 0, 1]
    assert f["upper case"].tolist()[:6] == [0, 0, 0, 1, 0, 0]
    grimm = "He said 'don't go' and 'yes'."
    inside = text_features(grimm)["inside quotes"]
    # Single quotes too; apostrophes are no quotes.
    assert "".join(c for c, v in zip(grimm, inside) if v) == "'don't go'yes"


def test_correlation_is_pearson_and_undefined_for_a_constant_unit():
    feature = np.array([0.0, 1, 0, 1, 1, 0])
    values = np.stack([feature * 3 + 2, -feature, np.ones(6), np.array([1.0, 2, 3, 4, 5, 6])], 1)
    r = correlations(values, feature)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and np.isnan(r[2])
    assert r[3] == pytest.approx(np.corrcoef(values[:, 3], feature)[0, 1])


def test_a_feature_that_never_changes_gets_no_cells():
    ranked = find_cells(tiny(), "no quotes in this line at all, only words\n" * 2, top=3)
    assert ranked["inside quotes"] == []
    assert len(ranked["inside a word"]) == 3
    assert all(abs(a.r) >= abs(b.r) for a, b in zip(ranked["inside a word"], ranked["inside a word"][1:]))
    with pytest.raises(ValueError, match="at least"):
        find_cells(tiny(), "too short")


def quoted_text(n_chars: int, seed: int) -> str:
    """Inside and outside quotes use the same letters but different words, so only memory tells them apart."""
    rng = random.Random(seed)
    outside, inside = ["abcd", "badc", "cdab", "dcba", "ab", "cd"], ["acbd", "bdac", "cadb", "dbca", "ac", "bd"]
    lines: list[str] = []
    while sum(map(len, lines)) < n_chars:
        words = [rng.choice(outside) for _ in range(rng.randint(1, 4))]
        words.append('"' + " ".join(rng.choice(inside) for _ in range(rng.randint(1, 5))) + '"')
        words += [rng.choice(outside) for _ in range(rng.randint(0, 3))]
        lines.append(" ".join(words) + ".\n")
    return "".join(lines)


def test_training_grows_a_cell_that_tracks_quotes(tmp_path):
    config = TrainConfig(num_layers=1, hidden_size=16, embedding_dim=8, dropout=0.0, batch_size=16, seq_len=64, lr=2e-2,
                         warmup_steps=10, max_steps=600, eval_interval=600, patience=None, device="cpu")
    list(train([quoted_text(30_000, seed=0)], tmp_path / "m", config))
    trained = load_model(tmp_path / "m")
    probe = quoted_text(3000, seed=1)
    quote = text_features(probe)["inside quotes"]

    best = rank_cells(activations(trained, probe), top=3)["inside quotes"][0]
    untrained = CharRNN(list(trained.vocab.chars), num_layers=1, hidden_size=16, embedding_dim=8).eval()
    chance = abs(rank_cells(activations(untrained, probe), top=1)["inside quotes"][0].r)
    # The best any unit could do from the current character alone, without memory:
    chars = np.array(list(probe))
    by_char = np.array([quote[chars == c].mean() for c in probe])
    from_char = abs(correlations(by_char[:, None], quote)[0])
    assert abs(best.r) > 0.5
    assert abs(best.r) > chance + 0.3 and abs(best.r) > from_char + 0.25, (best, chance, from_char)


def test_temperature_sweep_shares_the_prompt_and_seed():
    model = tiny()
    settings = SampleSettings(length=80, seed=11)
    sweep = temperature_sweep(model, "She", settings)
    assert [t for t, _ in sweep] == [0.2, 0.5, 0.8, 1.0, 1.3]
    assert all(len(text) == 80 for _, text in sweep)
    for t, text in sweep:  # each column is exactly what sampling at that temperature with that seed gives
        assert text == sample(model, "She", SampleSettings(length=80, temperature=t, seed=11))[0]
    assert len({text for _, text in sweep}) > 1
    assert temperature_sweep(model, "She", settings) == sweep


# --- the app's views, without a server ------------------------------------------------------------

class FakeStudio:
    """Studio.load resolves the model picker; the views only need that."""

    def __init__(self, model: CharRNN) -> None:
        self.model = model

    def load(self, model, hub_repo_id=None, session=None):  # noqa: ARG002
        return self.model


@pytest.fixture
def saved_tiny(tmp_path) -> CharRNN:
    save_checkpoint(tmp_path / "m", tiny(), "card")
    return load_model(tmp_path / "m")


def test_inspect_view_colours_each_generated_character_and_lists_alternatives(saved_tiny):
    views = InsightViews(FakeStudio(saved_tiny))
    settings = SampleSettings(length=40, temperature=1.0, seed=3).checked(len(saved_tiny.vocab))
    generated = "".join(s.char for s in stream(saved_tiny, "She", settings))
    page, data = views.inspect("She", "She" + generated)
    assert data["prompt"] == "She" and data["text"] == generated and len(data["chars"]) == 40
    assert page.count("data-tip=") == 40 and "hsl(" in page and "the model&#x27;s top 5" in page
    assert len(data["chars"][0]["alternatives"]) == 5
    with pytest.raises(gr.Error, match="Generate first"):
        views.inspect("She", "She")


def test_temperatures_view_shows_five_columns_with_one_seed(saved_tiny):
    html, data = InsightViews(FakeStudio(saved_tiny)).temperatures("She", 30, "5")
    assert data["seed"] == 5 and [s["temperature"] for s in data["samples"]] == [0.2, 0.5, 0.8, 1.0, 1.3]
    assert html.count("<h4>temperature") == 5
    with pytest.raises(gr.Error, match="length"):
        InsightViews(FakeStudio(saved_tiny)).temperatures("She", 0, "5")


def test_originality_view_marks_copies_or_says_it_is_unavailable(saved_tiny):
    views = InsightViews(FakeStudio(saved_tiny))
    html, data = views.originality("She", "She said something")
    assert data == {"available": False, "message": data["message"]} and "unavailable" in html
    build_index([TEXT]).save(Path(saved_tiny.directory) / "ngram_index.safetensors")
    html, data = views.originality("She", 'She said "come here" and he came.\nno no')
    assert data["available"] and data["spans"] == [[0, 31]]  # found from the prompt on, marked from the generated part
    assert data["share"] == pytest.approx(31 / 36) and '<mark class="copied">' in html


def test_neuron_views_colour_by_one_unit_and_rank_cells(saved_tiny):
    views = NeuronViews(FakeStudio(saved_tiny))
    html, data = views.neurons(TEXT, 2, 11, "cell state c")
    assert len(data["values"]) == len(TEXT) and html.count("data-tip=") == len(TEXT) and "rgba(" in html
    assert data["values"] == pytest.approx(activations(saved_tiny, TEXT).c[:, 1, 11].tolist(), abs=1e-6)
    with pytest.raises(gr.Error, match="unit must be a whole number from 0 to 11"):
        views.neurons(TEXT, 1, 12)
    with pytest.raises(gr.Error, match="layer"):
        views.neurons(TEXT, 3, 0)
    rows, how = views.find_cells(TEXT)
    assert {r[0] for r in rows} == {"inside quotes", "position in line", "inside a word", "just after a newline",
                                    "upper case"}
    assert all(1 <= r[2] <= 2 and 0 <= r[3] < 12 and -1 <= r[5] <= 1 for r in rows)
    assert "Pearson" in how
    evt = gr.SelectData(None, {"index": [0, 1], "value": rows[0][1], "row_value": rows[0]})
    assert views.pick_cell(rows, evt) == (rows[0][2], rows[0][3], rows[0][4])


def test_each_view_is_an_api_endpoint(tmp_path):
    """The calls the README documents, through gradio_client against the served app."""
    gradio_client = pytest.importorskip("gradio_client")
    from app_testing import make_checkpoints, serve

    demo, url = serve(make_checkpoints(tmp_path))
    try:
        c = gradio_client.Client(url, verbose=False)
        text, _ = c.predict("Once upon", 0.8, 60, "1", "fairy-tales", "", 0, 1.0, api_name="/generate")
        _, data = c.predict("Once upon", text, "fairy-tales", "", api_name="/inspect")
        assert len(data["chars"]) == 60 and len(data["chars"][0]["alternatives"]) == 5
        _, data = c.predict("Once upon", 40, "1", "fairy-tales", "", 0, 1.0, api_name="/temperatures")
        assert [s["temperature"] for s in data["samples"]] == [0.2, 0.5, 0.8, 1.0, 1.3]
        _, data = c.predict("Once upon", text, "fairy-tales", "", api_name="/originality")
        assert data["available"] and 0 <= data["share"] <= 1  # train wrote the index into the checkpoint
        _, data = c.predict(text, 1, 3, "cell state c", "fairy-tales", "", api_name="/neurons")
        assert len(data["values"]) == len(text)
        table, how = c.predict(text, "fairy-tales", "", api_name="/find_cells")
        assert table["headers"] == ["feature", "rank", "layer", "unit", "state", "r"]
        assert table["data"] and "Pearson" in how
        with pytest.raises(Exception, match="unit must be a whole number from 0 to 31"):
            c.predict(text, 1, 99, "cell state c", "fairy-tales", "", api_name="/neurons")
    finally:
        demo.close()
