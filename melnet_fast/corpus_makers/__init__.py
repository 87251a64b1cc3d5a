"""Real corpora made on the machine, with no network: `melnet-fast data music DIR` and `melnet-fast data speech
DIR` write audio and a manifest in the generic CSV layout (melnet_fast.corpora), reproducibly from a seed."""

from melnet_fast.corpus_makers.common import MissingTool
from melnet_fast.corpus_makers.music import make_music_corpus
from melnet_fast.corpus_makers.speech import make_speech_corpus

__all__ = ["MissingTool", "make_music_corpus", "make_speech_corpus"]
