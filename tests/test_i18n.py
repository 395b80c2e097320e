"""The page in English and Chinese: the translation table, handler messages by Accept-Language, example prompts."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from webapp import i18n
from webapp.generate_tab import Generator
from webapp.models import Studio
from webapp.train_tab import Trainer


def request(language: str) -> SimpleNamespace:
    return SimpleNamespace(headers={"accept-language": language}, session_hash="i18n-test")


def test_every_key_has_both_languages():
    for key, texts in i18n.TEXTS.items():
        assert len(texts) == 2 and all(isinstance(t, str) and t.strip() for t in texts), key
    built = i18n.build().translations_dict
    assert set(built["en"]) == set(built["zh"]) == set(built["zh-CN"]) == set(built["zh-TW"]) == set(i18n.TEXTS)
    assert built["en"]["seed_prompt"] == "Seed prompt" and built["zh-CN"]["seed_prompt"] == "开头提示"


@pytest.mark.parametrize(("header", "lang"), [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("zh", "zh"), ("zh-TW", "zh"),
                                              ("en-US,en;q=0.9", "en"), ("fr-FR, zh;q=0.5", "en"), ("", "en")])
def test_language_comes_from_accept_language(header, lang):
    assert i18n.language(request(header)) == lang
    assert i18n.language(None) == "en"


def test_train_without_upload_is_refused_in_the_visitors_language(tmp_path):
    studio = Studio(tmp_path)
    with pytest.raises(gr.Error) as zh:
        list(Trainer(studio).train(None, request=request("zh-CN,zh;q=0.9")))
    assert zh.value.message == "请先上传一个 .txt 文件。"
    with pytest.raises(gr.Error) as en:
        list(Trainer(studio).train(None, request=request("en-US")))
    assert en.value.message == "Upload a .txt file first."


def test_generate_without_a_model_is_refused_in_the_visitors_language(tmp_path):
    studio = Studio(tmp_path)
    with pytest.raises(gr.Error) as zh:
        list(Generator(studio).generate("春", request=request("zh-TW")))
    assert zh.value.message.startswith("没有可用的模型") and "训练" in zh.value.message
    with pytest.raises(gr.Error) as en:
        list(Generator(studio).generate("Once", request=request("en")))
    assert en.value.message.startswith("No model is available:")


def test_training_status_lines_are_translated_for_chinese_only():
    line = "Training tang from scratch: step 1,200 · loss 2.345 · ETA 3 min"
    assert i18n.english_to("en", line) == line
    assert i18n.english_to("zh", line) == "正在从 scratch 训练 tang：第 1,200 步 · 损失 2.345 · 预计剩余 3 min"
    assert i18n.english_to("zh", "step 3:\nThe king") == "step 3:\nThe king"  # not a known message: as it is


def test_example_prompts_follow_the_models_vocabulary():
    tang = ["\x00", "\n", "，", "。", *"春眠不覺曉處處聞啼鳥床前明月光"]
    assert i18n.example_prompts(tang)[:3] == ["春曉\n", "靜夜思\n", "床前明月光，"]
    english = ["\x00", "\n", " ", *"abcdefghijklmnopqrstuvwxyz", "春"]
    assert i18n.example_prompts(english) == i18n.ENGLISH_EXAMPLES
    assert i18n.example_prompts(()) == i18n.ENGLISH_EXAMPLES


def test_example_prompts_of_a_shipped_english_model(tmp_path):
    from app_testing import tiny_checkpoints

    studio = Studio(tiny_checkpoints())
    assert studio.example_samples(None) == [[p] for p in i18n.ENGLISH_EXAMPLES]
    assert Studio(tmp_path).example_samples("nothing") == [[p] for p in i18n.ENGLISH_EXAMPLES]
