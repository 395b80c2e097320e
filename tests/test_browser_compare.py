"""The Compare & score tab in a real browser (Debian's headless chromium driven by Playwright).

Screenshots go to artifacts/ (git-ignored): compare.png and score.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from app_testing import ARTIFACTS, browser_page, make_checkpoints, story_text

from charrnn.train import TrainConfig, train

pytestmark = pytest.mark.browser

LENGTH = 120


def two_models(root: Path) -> Path:
    """root with the tiny fairy-tales model and a second one, "other", trained from another seed."""
    make_checkpoints(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = TrainConfig(num_layers=1, hidden_size=32, embedding_dim=16, batch_size=8, seq_len=32, max_steps=40,
                         eval_interval=20, lr=1e-2, seed=2)
    try:
        for _ in train([story_text(seed=5)], root / "other", config):
            pass
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with browser_page(two_models(tmp_path_factory.mktemp("shipped"))) as page:
        page.get_by_role("tab", name="Compare & score").click()
        yield page


def test_compare_streams_two_coloured_columns(page):
    length = page.get_by_label("Length of each text (characters)").first  # the slider's number box
    length.fill(str(LENGTH))
    length.press("Enter")
    page.locator("#compare-seed textarea, #compare-seed input").first.fill("7")
    page.get_by_role("button", name="Compare", exact=True).click()
    columns = page.locator("#compare-view .charrnn-column")
    page.wait_for_function(
        "[...document.querySelectorAll('#compare-view .charrnn-column')].length === 2 && "
        f"[...document.querySelectorAll('#compare-view .charrnn-column')].every("
        f"c => c.querySelectorAll('span[data-tip]').length === {LENGTH}) && "
        "!document.querySelector('#compare-view').textContent.includes('so far')")
    assert columns.locator("h4").all_inner_texts() == ["fairy-tales", "other"]
    for i in range(2):
        column = columns.nth(i)
        assert "Once upon a time" in column.locator(".prompt").inner_text()
        char = column.locator("span[data-tip]").nth(3)
        assert char.evaluate("el => getComputedStyle(el).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")
        assert "%" in char.get_attribute("data-tip")
    texts = [columns.nth(i).locator(".charrnn-text").inner_text() for i in range(2)]
    assert texts[0] != texts[1]
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)


def test_score_shows_each_models_loss(page):
    page.locator("#score-text textarea").fill(story_text(12, seed=3))
    page.get_by_role("button", name="Score", exact=True).click()
    table = page.locator("#score-view table.charrnn-scores")
    table.wait_for()
    rows = table.locator("tr").all_inner_texts()
    assert len(rows) == 3 and rows[1].startswith("fairy-tales") and rows[2].startswith("other")
    page.locator("#score-view").get_by_text("nats/char").first.wait_for()
    assert page.locator("#score-view .charrnn-score-model span[data-tip]").count() > 100
    assert page.locator("#score-view ol.charrnn-stretches li").count() == 10
    page.locator("#score-view").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "score.png"), full_page=True)
