"""The page's texts in English and Chinese, by key, and the language a request asks for.

Static texts (labels, help, buttons, tabs, Markdown) are translated in the browser by gr.I18n from
the browser's language. Messages the handlers write at run time are translated here, from the
request's Accept-Language header: english_to(lang, text) turns a known English message into Chinese
and leaves any other text as it is, so English visitors see exactly the English messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import gradio as gr
from gradio.i18n import I18nData

from charrnn.text import mostly_chinese
from webapp import limits

ENGLISH_EXAMPLES = [
    "Once upon a time there was a king who had three daughters",
    "The little mermaid swam up to the surface and",
    "ROMEO:\n",
    "\"Who is there?\" asked the old woman.",
]
# The Tang corpus gives each poem a title line, then its lines: a title ends with a newline, so the model
# writes a poem under it; a first line (ending in "，") is carried on.
CHINESE_EXAMPLES = ["春曉\n", "靜夜思\n", "床前明月光，", "白日依山盡，"]
DEFAULT_PROMPTS = {"en": "Once upon a time", "zh": CHINESE_EXAMPLES[0]}  # the prompt a page opens with
TEMPERATURE_HELP = (
    "How adventurous the sampling is. 0 always takes the most likely next character (safe but repetitive); "
    "1 samples the model's own probabilities; above 1 flattens them (wilder, more invented words)."
)

# key: (English, Chinese)
TEXTS: dict[str, tuple[str, str]] = {
    "intro": ("# charrnn\nA character-level LSTM writes one character at a time. "
              "Generate from a shipped model, or fine-tune one on your own text.",
              "# charrnn\n字符级 LSTM 一次写一个字符。用自带的模型生成文本，或用你自己的文本微调一个模型。"),
    "advanced": ("Advanced", "高级设置"),
    "stop": ("Stop", "停止"),
    "top_k_info": ("Sample only from the k most likely characters (0 = off).",
                   "只从最可能的 k 个字符中采样（0 = 关闭）。"),
    "top_p": ("Top-p (nucleus)", "Top-p（核采样）"),
    "top_p_info": ("Sample only from the most likely characters that together hold this probability (1 = off).",
                   "只从合计概率达到此值的最可能字符中采样（1 = 关闭）。"),
    "stop_at": ("Stop at", "停止于"),
    "stop_at_info": ("End the text at the first end of a sentence, line or blank line, or at any text "
                     "you type (\\n is a newline); it keeps what it stopped at.",
                     "在第一个句末、行末或空行处结束，或在你输入的任意文本处结束（\\n 表示换行）；"
                     "停止处的文本会保留。"),
    "min_length": ("Minimum length", "最短长度"),
    "min_length_info": ("Characters written before it may stop.", "可以停止之前至少写出的字符数。"),
    "mode": ("Mode", "模式"),
    "mode_info": ("Beam search writes the most likely continuation it finds, the same every time "
                  "(no seed, no Stop at).",
                  "束搜索写出它找到的最可能的续写，每次都相同（不用随机种子，也不用“停止于”）。"),
    "beam_width": ("Beam width", "束宽"),
    "beam_width_info": ("Continuations kept at each step in beam search.", "束搜索每一步保留的续写数。"),
    "tab_generate": ("Generate", "生成"),
    "run_in_browser": ("Run in my browser", "在我的浏览器中运行"),
    "run_in_browser_info": ("The model is fetched once and writes in this page: the server does no work per "
                            "character. Beam search, Inspect and Hub models still run on the server.",
                            "模型只下载一次，在本页面中写作：服务器不为每个字符做任何计算。束搜索、检查和 Hub "
                            "模型仍在服务器上运行。"),
    "browser_loading": ("Fetching the model into this page…", "正在把模型下载到本页面…"),
    "browser_ready": ("{model} writes in your browser.", "{model} 在你的浏览器中写作。"),
    "browser_beam": ("Beam search runs on the server: turn off Run in my browser to use it.",
                     "束搜索在服务器上运行：要使用它，请关闭“在我的浏览器中运行”。"),
    "browser_hub": ("Hub models run on the server: turn off Run in my browser, or clear the Hub repo id.",
                    "Hub 模型在服务器上运行：请关闭“在我的浏览器中运行”，或清空 Hub 仓库名。"),
    "browser_failed": ("The page could not run the model:", "页面无法运行该模型："),
    "seed_prompt": ("Seed prompt", "开头提示"),
    "seed_prompt_placeholder": ("Once upon a time", "春眠不覺曉，"),
    "example_prompts": ("Example prompts", "示例开头"),
    "model": ("Model", "模型"),
    "model_info": ("The shipped models, and the ones you fine-tune in the Train tab (this session only).",
                   "自带的模型，以及你在“训练”标签页微调的模型（仅限本次会话）。"),
    "hub_repo_id": ("…or a Hub repo id", "……或 Hub 仓库 ID"),
    "hub_repo_id_info": ("A charrnn model on the Hugging Face Hub; used instead of the list when filled in.",
                         "Hugging Face Hub 上的 charrnn 模型；填写后将代替列表中的模型。"),
    "temperature": ("Temperature", "温度"),
    "temperature_info": (TEMPERATURE_HELP,
                         "采样有多大胆。0 总是取最可能的下一个字符（稳妥但重复）；1 按模型自己的概率采样；"
                         "大于 1 会把概率拉平（更狂野，生造的词更多）。"),
    "length": ("Length (characters)", "长度（字符）"),
    "random_seed": ("Random seed", "随机种子"),
    "seed_placeholder": ("empty = random", "留空 = 随机"),
    "seed_info": ("The same seed, settings and model give the same text.", "相同的种子、设置和模型会得到相同的文本。"),
    "generate": ("Generate", "生成"),
    "generated_text": ("Generated text", "生成的文本"),
    "seed_used": ("Seed used", "所用种子"),
    "undo_branch": ("Undo branch", "撤销分支"),
    "push_title": ("Push to the Hugging Face Hub", "推送到 Hugging Face Hub"),
    "push_help": ("Uploads the model picked in Generate (after training, the one you just trained): weights, config "
                  "and model card. The training state stays here.",
                  "上传在“生成”中选中的模型（训练之后即你刚训练的模型）：权重、配置和模型卡。训练状态留在这里。"),
    "repo": ("Repo", "仓库"),
    "token": ("Access token with write permission", "有写权限的访问令牌"),
    "token_signed_in": ("Access token with write permission, or sign in above", "有写权限的访问令牌，或在上方登录"),
    "token_info": ("Used for this upload only: never stored, logged or shown.",
                   "只用于这次上传：不会被保存、记录或显示。"),
    "private_repo": ("Private repo", "私有仓库"),
    "push_button": ("Push to Hub", "推送到 Hub"),
    "tab_train": ("Train", "训练"),
    "training_text": ("Training text (.txt)", "训练文本（.txt）"),
    "start_from": ("Start from", "起点"),
    "start_from_info": ("Fine-tuning a shipped model learns a new style in minutes; from scratch "
                        "needs much more text and time.",
                        "微调自带模型几分钟就能学会新风格；从零开始需要多得多的文本和时间。"),
    "model_size": ("Model size (from scratch only)", "模型大小（仅从零开始）"),
    "time_budget": ("Time budget (minutes)", "时间预算（分钟）"),
    "time_budget_info": ("Training stops when this runs out; the best model so far is kept.",
                         "时间用完即停止训练；保留目前最好的模型。"),
    "ascii_folding": ("ASCII folding", "ASCII 折叠"),
    "ascii_folding_info": ("Folding turns curly quotes and accents into plain ASCII: a smaller "
                           "vocabulary learns faster.", "折叠会把弯引号和重音字母变成普通 ASCII：词表越小学得越快。"),
    "learning_rate": ("Learning rate (0 = automatic)", "学习率（0 = 自动）"),
    "max_steps": ("Stop after this many steps (0 = only the time budget)", "训练这么多步后停止（0 = 只看时间预算）"),
    "start_training": ("Start training", "开始训练"),
    "train_status": ("Upload a text, pick where to start from, and press Start.",
                     "上传一段文本，选择起点，然后按“开始训练”。"),
    "loss_title": ("Loss (nats per character)", "损失（每字符奈特）"),
    "latest_sample": ("Latest sample", "最新样本"),
    "download": ("Download the model (.zip)", "下载模型（.zip）"),
    "insight": ("See inside the model", "看看模型内部"),
    "inspect": ("Inspect", "检视"),
    "sweep": ("Temperature side by side", "不同温度并排"),
    "originality": ("Originality check", "原创性检查"),
    "insight_help": ("<p>Inspect colours the generated text by how sure the model was of each character; "
                     "hover over a character for the five it considered.</p>",
                     "<p>“检视”按模型对每个字符的把握给生成的文本上色；把鼠标停在字符上可看到它考虑过的五个字符。</p>"),
    "as_data": ("The same as data (what the API returns)", "同样的内容，以数据形式（API 返回的内容）"),
    "tab_neurons": ("Neurons", "神经元"),
    "neurons_help": ("Run a text through the model chosen in the Generate tab and colour each character by the value "
                     "of one cell after reading it (red positive, blue negative): Karpathy's char-RNN visualisation. "
                     "Or let the app find the cells that follow simple features of the text.",
                     "把一段文本送入“生成”标签页选中的模型，按读完每个字符后某个单元的值给字符上色（红为正，蓝为负）："
                     "即 Karpathy 的 char-RNN 可视化。也可以让应用找出跟随文本简单特征的单元。"),
    "text": ("Text", "文本"),
    "use_last": ("Use the last generated text", "使用最近生成的文本"),
    "layer": ("Layer", "层"),
    "layer_info": ("1 is nearest the input", "1 最靠近输入"),
    "unit": ("Unit", "单元"),
    "unit_info": ("0 to hidden size − 1", "0 到隐藏层大小 − 1"),
    "state": ("State", "状态"),
    "state_info": ("c is the cell's memory; h = o · tanh(c) is what the layer outputs",
                   "c 是单元的记忆；h = o · tanh(c) 是该层的输出"),
    "colour_by_cell": ("Colour by this cell", "按这个单元上色"),
    "find_cells": ("Find interesting cells", "寻找有趣的单元"),
    "cells": ("Interesting cells: click a row to colour the text by that cell",
              "有趣的单元：点击一行即按该单元给文本上色"),
    "tab_compare": ("Compare & score", "比较与评分"),
    "compare_help": ("Pick the models (the base model and your fine-tune, say): **Compare** writes with each from one "
                     "prompt, seed and settings, side by side; **Score** measures how well each predicts a text.",
                     "选择模型（比如基础模型和你的微调模型）：**比较** 用同一个开头、种子和设置让每个模型并排写作；"
                     "**评分** 衡量每个模型预测一段文本的能力。"),
    "models": ("Models", "模型"),
    "models_info": (f"Up to {limits.MAX_COMPARE_MODELS}: the shipped models, and the ones you "
                    "fine-tune in the Train tab (this session only).",
                    f"最多 {limits.MAX_COMPARE_MODELS} 个："
                    "自带的模型，以及你在“训练”标签页微调的模型（仅限本次会话）。"),
    "hub_repo_ids": ("…and Hub repo ids", "……以及 Hub 仓库 ID"),
    "hub_repo_ids_info": ("charrnn models on the Hugging Face Hub, separated by commas.",
                          "Hugging Face Hub 上的 charrnn 模型，用逗号分隔。"),
    "compare_heading": ("### Compare", "### 比较"),
    "prompt": ("Prompt", "开头提示"),
    "compare_length": ("Length of each text (characters)", "每段文本的长度（字符）"),
    "compare_seed": ("Seed (one for every model)", "种子（所有模型共用）"),
    "compare_seed_info": ("One seed for every model: each column is what its model writes alone.",
                          "所有模型共用一个种子：每一栏都是该模型单独写出的内容。"),
    "compare": ("Compare", "比较"),
    "compare_view": ("<p>Each model's text appears in its own column, every character coloured "
                     "by how sure that model was of it.</p>",
                     "<p>每个模型的文本各占一栏，每个字符按该模型的把握上色。</p>"),
    "score_heading": ("### Score", "### 评分"),
    "score_text": ("Text to score", "要评分的文本"),
    "score_placeholder": ("Paste a text, or upload one below.", "粘贴一段文本，或在下面上传。"),
    "score_upload": ("…or a .txt file (used instead of the text when given)",
                     "……或一个 .txt 文件（提供时代替上面的文本）"),
    "score": ("Score", "评分"),
    "score_view": ("<p>Each model's loss over the text, how surprising it found each character, "
                   "and the stretches that surprised it most.</p>",
                   "<p>每个模型在文本上的损失、它对每个字符的意外程度，以及最让它意外的片段。</p>"),
}
LANGUAGES = ("en", "zh")
CHINESE_LOCALES = ("zh", "zh-CN", "zh-TW", "zh-HK", "zh-SG", "zh-Hans", "zh-Hant")


def t(key: str) -> I18nData:
    """The page text under key, translated in the browser (KeyError for an unknown key)."""
    TEXTS[key]  # noqa: B018 - a typo fails when the page is built, not in the browser
    return I18nData(key)


def english(key: str) -> str:
    return TEXTS[key][0]


def build() -> gr.I18n:
    """The page's gr.I18n: English, and the same Chinese for every Chinese locale the browser may report."""
    en = {key: texts[0] for key, texts in TEXTS.items()}
    zh = {key: texts[1] for key, texts in TEXTS.items()}
    return gr.I18n(en=en, **{locale: zh for locale in CHINESE_LOCALES})


def language(request: object) -> str:
    """"zh" when the request's Accept-Language puts a Chinese language first among those it names, else "en"."""
    headers = getattr(request, "headers", None)
    try:
        accept = headers.get("accept-language", "") if headers is not None else ""
    except Exception:  # a request object without usable headers
        accept = ""
    first = str(accept or "").split(",")[0].split(";")[0].strip().lower()
    return "zh" if first == "zh" or first.startswith("zh-") else "en"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# The names messages give the fields, in Chinese; a page label's English text (TEXTS) is translated as well.
FIELDS = {
    "length": "长度", "top-k": "Top-k", "minimum length": "最短长度", "seed": "随机种子", "prompt": "开头提示",
    "generated text": "生成的文本", "model": "模型", "Hub repo id": "Hub 仓库 ID", "stop at": "停止于", "text": "文本",
    "position": "位置", "alternative": "替代字符", "layer": "层", "unit": "单元", "state": "状态",
    "beam width": "束宽", "the model size": "模型大小", "ASCII folding": "ASCII 折叠", "the models": "模型",
    "the upload": "上传的内容", "Hub repo ids": "Hub 仓库 ID", "this field": "这个字段",
    "Training text (.txt)": "训练文本（.txt）",
}
CHOSEN = r"[\w ()×,.-]+?"  # a list of choices as messages write it
# English message patterns the handlers and the page's inputs write, and their Chinese; the first that matches
# the whole text is used. In the Chinese, \1, \2 ... are the English groups, a field's name (FIELDS) translated.
MESSAGES: list[tuple[re.Pattern[str], str]] = [(re.compile(pattern, re.S), zh) for pattern, zh in [
    (r"Upload a \.txt file first\.", "请先上传一个 .txt 文件。"),
    (r"No model is available: (.+) holds no checkpoint yet\. Train one in the Train tab\.",
     r"没有可用的模型：\1 里还没有检查点。请在“训练”标签页训练一个。"),
    (r"There is no model called (.+) here\. Pick one from the list, or type a Hub repo id\.",
     r"这里没有名为 \1 的模型。请从列表中选择，或输入 Hub 仓库 ID。"),
    (r"There is no model called (.+) here\. Pick one from the list\.", r"这里没有名为 \1 的模型。请从列表中选择。"),
    (r"There is no model called (.+) to fine-tune\. Pick one from the list, or (.+)\.",
     r"没有名为 \1 的模型可以微调。请从列表中选择，或选 \2。"),
    (r"There is no model called (.+) in this session to download\.", r"本次会话中没有名为 \1 的模型可以下载。"),
    (r"There is no such model in this session\.", "本次会话中没有这个模型。"),
    (r"This session has ended: reload the page\.", "本次会话已结束：请重新加载页面。"),
    (r"This session is already training a model; stop it or wait for it to finish\.",
     "本次会话已经在训练一个模型；请停止它或等它完成。"),
    (r"The app is shutting down; try again in a minute\.", "应用正在关闭；请过一分钟再试。"),
    (r"(.+) is too short to train on: ([\d,]+) characters, but at least ([\d,]+) are needed",
     r"\1 太短，无法训练：只有 \2 个字符，至少需要 \3 个"),
    (r"(.+) is too short to train on: (.+)", r"\1 太短，无法训练：\2"),
    (r"(.+) is ([\d.]+) MB; the upload limit is (\d+) MB", r"\1 有 \2 MB；上传上限是 \3 MB"),
    (r"(.+): the upload could not be read; try again", r"\1：无法读取上传的文件；请重试"),
    (r"(?i:the) (.+) is ([\d,]+) characters long; at most ([\d,]+) are read here",
     r"\1长 \2 个字符；这里最多读取 \3 个"),
    (r"(.+) is ([\d,]+) characters long; at most ([\d,]+) are accepted", r"\1长 \2 个字符；最多接受 \3 个"),
    (r"(.+) holds ([\d,]+) characters; at most ([\d,]+) are scored here \(charrnn eval scores any length\)",
     r"\1 有 \2 个字符；这里最多评分 \3 个（charrnn eval 可以给任意长度评分）"),
    (r"(.+) must be a whole number, at least ([\d,]+) and at most ([\d,]+), not (.+)",
     r"\1必须是整数，至少 \2，至多 \3，而不是 \4"),
    (r"(.+) must be a whole number from ([\d,]+) to ([\d,]+) for this model, not (.+)",
     r"对这个模型，\1必须是 \2 到 \3 之间的整数，而不是 \4"),
    (r"the (position) must be a whole number from 0 to ([\d,]+) \(a character of the generated text\), not (.+)",
     r"\1必须是 0 到 \2 之间的整数（生成文本中的一个字符），而不是 \3"),
    (r"(.+) must be a whole number, not (.+)", r"\1必须是整数，而不是 \2"),
    (r"(.+) must be a number from (\S+) to (\S+), not (.+)", r"\1必须是 \2 到 \3 之间的数字，而不是 \4"),
    (r"(.+) must be a number, not (.+)", r"\1必须是数字，而不是 \2"),
    (r"(.+?): (.+) is out of range; the minimum is (\S+) and the maximum is (\S+)",
     r"\1：\2 超出范围；最小值是 \3，最大值是 \4"),
    (r"(.+?): (.+) is out of range; the minimum is (\S+)", r"\1：\2 超出范围；最小值是 \3"),
    (r"(.+?): (.+) is out of range; the maximum is (\S+)", r"\1：\2 超出范围；最大值是 \3"),
    (r"(?i:the) (.+) must be given as text, not (\w+)", r"\1必须以文本形式给出，而不是 \2"),
    (r"(.+) must be given as text, not (\w+)", r"\1必须以文本形式给出，而不是 \2"),
    (rf"(stop at) must be one of ({CHOSEN}) or a text, not (\w+)", r"\1必须是 \2 之一或一段文本，而不是 \3"),
    (rf"(.+?) must be one of ({CHOSEN}), not (.+)", r"\1必须是 \2 之一，而不是 \3"),
    (r"(.+) must be true or false, not (.+)", r"\1必须是 true 或 false，而不是 \2"),
    (r"(the upload) must be a file, not (.+)", r"\1必须是文件，而不是 \2"),
    (r"a value is nested more than (\d+) levels deep", r"有一个值嵌套超过 \1 层"),
    (r"(.+): upload a file; (.+) is not an uploaded file", r"\1：请上传文件；\2 不是已上传的文件"),
    (r"(.+): upload the file itself; links are not fetched", r"\1：请上传文件本身；不会抓取链接"),
    (r"(.+): (.+) is not the path of an uploaded file", r"\1：\2 不是已上传文件的路径"),
    (r"(.+) takes no file; (.+) is not a value for it", r"\1不接受文件；\2 不是它的值"),
    (r"(.+): a value sent is not one its fields take \((\w+)\)", r"\1：发送的某个值不是它的字段所接受的（\2）"),
    (r"(the models) must be a list of model names, not (.+)", r"\1必须是模型名称的列表，而不是 \2"),
    (r"at most (\d+) models at once, not ([\d,]+): pick fewer", r"一次最多 \1 个模型，而不是 \2 个：请少选几个"),
    (r"at most (\d+) models at once, not ([\d,]+)", r"一次最多 \1 个模型，而不是 \2 个"),
    (r"Pick at least (\d+) models \(from the list, or Hub repo ids separated by commas\); (\d+) (?:is|are) picked",
     r"请选择至少 \1 个模型（从列表中选，或输入用逗号分隔的 Hub 仓库 ID）；现在选了 \2 个"),
    (r"Pick a model \(from the list, or Hub repo ids separated by commas\); (\d+) (?:is|are) picked",
     r"请选择一个模型（从列表中选，或输入用逗号分隔的 Hub 仓库 ID）；现在选了 \1 个"),
    (r"(.+) is picked twice: pick each model once", r"\1 被选了两次：每个模型只选一次"),
    (r"There is no text to score: paste one, or upload a \.txt file\.",
     "没有要评分的文本：请粘贴一段，或上传一个 .txt 文件。"),
    (r"The text is too short to score: it needs at least (\d+) characters\.",
     r"文本太短，无法评分：至少需要 \1 个字符。"),
    (r"There is no generated text to (branch from|inspect|explain|check): press Generate first\.",
     r"没有可以\1的生成文本：请先按“生成”。"),
    (r"(the alternative) must be exactly one character, not (.+)", r"\1必须恰好是一个字符，而不是 \2"),
    (r"the model does not know the character (.+): pick one of the alternatives Inspect shows",
     r"模型不认识字符 \1：请从“检视”显示的替代字符中选一个"),
    (r"a branch needs a character's position and one alternative character, not (.+)",
     r"分支需要一个字符的位置和一个替代字符，而不是 \1"),
    (r"There is no branch to undo\.", "没有可以撤销的分支。"),
    (r"a click on a character carries its position, not (.+)", r"点击字符应带有它的位置，而不是 \1"),
    (r"Type or paste a text to run through the model \(or use the last generated one\)\.",
     "请输入或粘贴一段要送入模型的文本（或使用最近生成的文本）。"),
    (r"This model is a GRU: it has no cell state c, only the hidden state h\.",
     "这个模型是 GRU：它没有单元状态 c，只有隐藏状态 h。"),
    (r"Finding cells needs a text of at least (\d+) characters; a few paragraphs work best\.",
     r"寻找单元需要一段至少 \1 个字符的文本；几段文字效果最好。"),
    (r"There is no cell to pick: press \"Find interesting cells\" first\.", "没有可选的单元：请先按“寻找有趣的单元”。"),
    (r"A row of the cells table is layer, unit and state among six columns, not (.+)",
     r"单元表的一行应在六列中给出层、单元和状态，而不是 \1"),
    (r"The training queue is full \((\d+) runs? waiting\); try again in a few minutes\.",
     r"训练队列已满（\1 个任务在等待）；请过几分钟再试。"),
    (r"Only a model you trained in this session can be pushed: train one, then push it from here\.",
     "只能推送本次会话中训练的模型：先训练一个，再从这里推送。"),
    (r"Training is still running: wait for it to finish \(or press Stop\), then push\.",
     "训练仍在进行：请等它完成（或按“停止”），再推送。"),
    (r"Give the repo to push to, for example (.+)\.", r"请给出要推送到的仓库，例如 \1。"),
    (r"the time budget must be (\d+) to (\d+) minutes, not (.+)", r"时间预算必须是 \1 到 \2 分钟，而不是 \3"),
    (r"the learning rate must be a number \(0 = automatic\), not (.+)", r"学习率必须是数字（0 = 自动），而不是 \1"),
    (r"A minute of training reads about ([\d,]+) characters on this machine \(measured\), so (\d+) minutes? reads "
     r"(\d+%) of this text's ([\d,]+): the model takes on its style sooner with (\d+) minutes?, "
     r"which reads it all once\.",
     r"在这台机器上，一分钟的训练大约读取 \1 个字符（实测），所以 \2 分钟只读到这段文本 \4 个字符中的 \3："
     r"用 \5 分钟能把它完整读一遍，模型会更快学到它的风格。"),
    (r"Starting…", "正在开始……"),
    (r"Training (.+) from (.+): step (.+) · loss (.+) · ETA (.+)",
     r"正在从 \2 训练 \1：第 \3 步 · 损失 \4 · 预计剩余 \5"),
    (r"Training (.+?) from (.+?): (.+)", r"正在从 \2 训练 \1：\3"),
    (r"Waiting for the training slot: (\d+) runs? ahead of you\. Stop leaves the line\.",
     r"正在等待训练名额：前面还有 \1 个任务。按“停止”可离开队列。"),
    (r"\*\*Stopped\*\* before it started: nothing was trained\.", "**已停止**，尚未开始：什么也没有训练。"),
    (r"\*\*Stopped\*\*: (.+)", r"**已停止**：\1"),
    (r"\*\*(Done|Stopped early): (.+?)\*\* \((.+?)\)\. Best validation loss ([\d.]+) nats/char\. "
     r"It is now in the Generate tab's model list, for this session only\.",
     r"**\1：\2**（\3）。最佳验证损失 \4 奈特/字符。它已加入“生成”标签页的模型列表（仅限本次会话）。"),
]]
ACTIONS = {"branch from": "分支", "inspect": "检视", "explain": "解释", "check": "检查"}
UNKNOWN_LEAD = "未能完成："  # put before a message with no Chinese here (a library's, passed on as it is)


def field_zh(name: str) -> str:
    """A field's name as a Chinese message gives it: FIELDS, the page's label, else as it is."""
    if name in FIELDS:
        return FIELDS[name]
    for english, chinese in TEXTS.values():
        if name == english:
            return chinese
    return ACTIONS.get(name, name)


def _message_zh(text: str) -> str | None:
    for pattern, zh in MESSAGES:
        match = pattern.fullmatch(text)
        if match:
            return _filled(zh, [field_zh(group or "") for group in match.groups()])
    return None


def _filled(template: str, groups: list[str]) -> str:
    """template with each \\N replaced by groups[N - 1]."""
    return re.sub(r"\\(\d)", lambda ref: groups[int(ref.group(1)) - 1], template)


def english_to(lang: str, text: object) -> object:
    """text in lang: a known English message in Chinese for "zh"; anything else, and every text for "en", as given."""
    if lang != "zh" or not isinstance(text, str):
        return text
    translated = _message_zh(text)
    return text if translated is None else translated


def error_in(lang: str, exc: gr.Error) -> gr.Error:
    """exc, or for "zh" a gr.Error with the same settings whose message is in Chinese: translated when it is
    known, else behind a Chinese lead. An error already put into a language is given back as it is."""
    if lang != "zh" or getattr(exc, "language", None) == lang:
        return exc
    message = str(exc.message)
    translated = _message_zh(message) or UNKNOWN_LEAD + message
    error = gr.Error(translated, duration=exc.duration, visible=exc.visible, title=exc.title, print_exception=False)
    error.language = lang
    return error


def translating(lang: str, updates: Iterator, statuses: bool = True) -> Iterator:
    """A handler's updates, with any gr.Error it raises translated into lang, and with statuses, a text update
    (or a tuple's first item, a status line) too; for "en", exactly the updates and errors as they come."""
    if lang != "zh":
        yield from updates
        return
    try:
        for update in updates:
            if not statuses:
                yield update
            elif isinstance(update, tuple) and update:
                yield (english_to(lang, update[0]), *update[1:])
            else:
                yield english_to(lang, update)
    except gr.Error as exc:
        raise error_in(lang, exc) from None


def is_cjk_vocabulary(chars: object) -> bool:
    """Whether a vocabulary's characters are mostly Chinese (text.mostly_chinese)."""
    chars = [c for c in chars if isinstance(c, str)] if isinstance(chars, (list, tuple)) else []
    return mostly_chinese("".join(chars))


def untouched_prompt(prompt: object) -> bool:
    """Whether a prompt is still one the page put there (empty, a default or an example), not the visitor's own."""
    return not prompt or prompt in (*ENGLISH_EXAMPLES, *CHINESE_EXAMPLES, *DEFAULT_PROMPTS.values())


def example_prompts(chars: object) -> list[str]:
    """Openings that suit a model with these vocabulary characters: titles and first lines for a Chinese
    model, English openings otherwise."""
    return list(CHINESE_EXAMPLES if is_cjk_vocabulary(chars) else ENGLISH_EXAMPLES)
