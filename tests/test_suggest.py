"""An upload starts from a shipped model of its own script: Chinese text from a Chinese model, others from English."""

from pathlib import Path

import torch
from app_testing import make_checkpoints

from charrnn.model import CharRNN
from charrnn.text import cjk_share
from charrnn.vocab import Vocab
from webapp.models import Studio
from webapp.session import Sessions
from webapp.upload_box import Uploads

POEM = ("春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少。\n\n"
        "靜夜思\n床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n")
TALE = "Once upon a time there was a king who had three daughters, and the youngest was the fairest.\n"


def studio_with_both(tmp_path: Path) -> Studio:
    root = make_checkpoints(tmp_path / "shipped")
    torch.manual_seed(0)
    chinese = CharRNN(list(Vocab.build([POEM * 3]).chars), num_layers=1, hidden_size=16, embedding_dim=8, dropout=0.0)
    chinese.save_pretrained(root / "tang-poems")
    return Studio(root, Sessions(tmp_path / "sessions"))


def upload(tmp_path: Path, text: str) -> str:
    path = tmp_path / "upload.txt"
    path.write_text(text * 200, encoding="utf-8")
    return str(path)


def test_the_share_of_chinese_characters():
    assert cjk_share(POEM) > 0.8 and cjk_share(TALE) == 0 and cjk_share("") == 0


def test_a_chinese_upload_starts_from_the_chinese_model_and_an_english_one_from_the_english(tmp_path):
    studio = studio_with_both(tmp_path)
    assert Uploads(studio).suggest_base(upload(tmp_path, POEM), "fairy-tales")["value"] == "tang-poems"
    assert Uploads(studio).suggest_base(upload(tmp_path, TALE), "tang-poems")["value"] == "fairy-tales"
    report = Uploads(studio).inspect_upload(upload(tmp_path, POEM), "tang-poems", "as the base model")
    assert "starting from tang-poems, the shipped model for text in Chinese, as this text is" in report
    report = Uploads(studio).inspect_upload(upload(tmp_path, TALE), "fairy-tales", "as the base model")
    assert "the shipped model for text in an alphabet, not Chinese" in report and "mostly not" not in report


def test_a_model_the_visitor_picked_stays(tmp_path):
    studio = studio_with_both(tmp_path)
    assert "value" not in Uploads(studio).suggest_base(upload(tmp_path, POEM), "my-own-fine-tune")


def test_fine_tuning_an_english_model_on_chinese_text_says_how_many_characters_it_adds(tmp_path):
    studio = studio_with_both(tmp_path)
    report = Uploads(studio).inspect_upload(upload(tmp_path, POEM), "fairy-tales", "keep Unicode")
    assert "characters new to fairy-tales" in report and "fine-tuning adds them to the vocabulary" in report
