"""The symbol sets of the text front end. A model stores its own set in its config (MelNetConfig.text_symbols),
so a saved model encodes text the same way whatever these defaults become."""

PAD, EOS = 0, 1  # reserved ids: padding after the end of a text, and the end-of-text symbol
RESERVED = 2  # the symbols of a vocabulary have ids RESERVED, RESERVED + 1, ...

PUNCTUATION = " !\"'(),-.:;?"
CHARACTERS = PUNCTUATION + "abcdefghijklmnopqrstuvwxyz"
# IPA that espeak-ng writes for English (and most European languages), with stress and length marks.
PHONEMES = (PUNCTUATION + "abcdefghijklmnopqrstuvwxyz"
            + "æçðŋœøɐɑɒɔɕəɘɚɛɜɞɟɡɣɤɥɨɪɫɬɭɯɲɳɵɸɹɺɻɽɾʀʁʂʃʈʉʊʋʌʍʎʏʐʑʒʔʕʝʰʲʷˈˌːˑ̃βθχᵻ")

FRONT_ENDS = ("characters", "phonemes")
DEFAULT_SYMBOLS = {"characters": CHARACTERS, "phonemes": PHONEMES}
