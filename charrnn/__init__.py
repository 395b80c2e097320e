"""charrnn: character-level LSTM language models you can train, fine-tune, sample and inspect."""

from charrnn.checkpoint import CheckpointError, load_model, save_checkpoint
from charrnn.config import TrainConfig
from charrnn.engine import Generation, GenerationEngine, sample, stream
from charrnn.evaluate import evaluate_ids, evaluate_text
from charrnn.model import CharRNN
from charrnn.sampling import SampledChar, SampleSettings
from charrnn.text import Corpus, TextError, read_corpus
from charrnn.train import TrainEvent, TrainResult, train
from charrnn.vocab import Vocab

__all__ = [
    "CharRNN", "CheckpointError", "Corpus", "Generation", "GenerationEngine", "SampleSettings", "SampledChar",
    "TextError", "TrainConfig", "TrainEvent", "TrainResult", "Vocab", "evaluate_ids", "evaluate_text", "load_model",
    "read_corpus", "sample", "save_checkpoint", "stream", "train",
]
__version__ = "0.1.0"
