"""The page for a visitor whose browser asks for Chinese, in headless chromium: Chinese labels and tab names,
and a generation. The screenshot goes to artifacts/zh.png (git-ignored)."""

from __future__ import annotations

import pytest
from app_testing import ARTIFACTS, browser_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page():
    """The page on the shipped models (the Tang model among them), for a browser asking for Chinese."""
    from charrnn.checkpoint import SHIPPED_ROOT

    with browser_page(SHIPPED_ROOT, locale="zh-CN") as page:
        yield page


def test_the_page_in_chinese_generates(page):
    page.locator("#generated textarea").wait_for()
    for tab in ("生成", "训练", "神经元", "比较与评分"):
        page.get_by_role("tab", name=tab).wait_for()
    assert page.get_by_text("Seed prompt", exact=True).count() == 0
    picker = page.get_by_label("模型", exact=True).first  # a Chinese page opens on the Tang model: pick another
    page.wait_for_function("document.querySelector('#generate-model input').value === 'tang-poems (shipped)'")
    picker.click()
    picker.fill("fairy")
    page.get_by_role("option", name="fairy-tales (shipped)").click()
    page.get_by_text("The little mermaid", exact=False).wait_for()  # the examples follow the model
    page.get_by_label("开头提示").fill("Once upon a time")
    page.get_by_label("随机种子").fill("5")
    page.get_by_text("示例开头").wait_for()
    page.get_by_text("看看模型内部").wait_for()
    page.get_by_role("button", name="生成", exact=True).click()
    # the whole default length: a click on Generate while this one still runs would be ignored
    page.wait_for_function("document.querySelector('#generated textarea').value.length >= 16 + 500")
    assert page.locator("#generated textarea").input_value().startswith("Once upon a time")
    page.screenshot(path=str(ARTIFACTS / "zh.png"), full_page=True)


def test_the_tang_model_writes_chinese_verse_on_the_chinese_page(page):
    page.locator("#generated textarea").wait_for()
    picker = page.get_by_label("模型", exact=True).first  # the Generate tab's (Compare has one too)
    picker.click()
    picker.fill("tang")
    page.get_by_role("option", name="tang-poems (shipped)").click()
    page.get_by_text("床前明月光，", exact=True).wait_for()  # the examples follow the model
    page.get_by_label("开头提示").fill("床前明月光，")
    length = page.get_by_label("长度（字符）").first
    length.fill("60")
    length.press("Enter")
    page.get_by_label("随机种子").fill("3")
    page.get_by_role("button", name="生成", exact=True).click()
    page.wait_for_function("(t => t.startsWith('床前明月光，') && t.length >= 66)"
                           "(document.querySelector('#generated textarea').value)")  # not the last test's text
    text = page.locator("#generated textarea").input_value()
    written = text[len("床前明月光，"):]
    assert text.startswith("床前明月光，") and sum("\u4e00" <= c <= "\u9fff" for c in written) > 30, text
    page.screenshot(path=str(ARTIFACTS / "zh-tang.png"), full_page=True)
