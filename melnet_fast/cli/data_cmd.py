"""`melnet-fast data music|speech DIR`: make a real corpus on this machine (no network), in the generic CSV layout."""

from __future__ import annotations

import time

from melnet_fast.cli.common import HelpFormatter, UserError, in_range


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="make a real music or speech corpus on this machine (no download)",
                       description="Write audio and DIR/manifest.csv (path, label or speaker, text, split, start, "
                                   "end) for `melnet-fast train --data DIR/manifest.csv`; the same seed makes the "
                                   "same corpus.")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    music = kinds.add_parser(
        "music", formatter_class=HelpFormatter,
        help="scores of music21's corpus played by FluidSynth, labelled by collection",
        description="Scores from the corpus music21 ships (Bach chorales, Palestrina, Monteverdi madrigals, "
                    "trecento songs, fiddle tunes) played by FluidSynth with a General MIDI SoundFont, cut into "
                    "excerpts, labelled by collection, split into train / validation / test by piece. Needs the "
                    "Debian packages fluidsynth and fluid-soundfont-gm (--install runs apt-get) and the music21 "
                    "package (pip install 'melnet_fast[corpora]').")
    music.add_argument("out", metavar="DIR")
    music.add_argument("--labels", nargs="+", help="collections (default: all of bach palestrina monteverdi "
                                                   "trecento folk)")
    music.add_argument("--pieces", type=int, default=12, help="pieces per collection")
    music.add_argument("--clip-seconds", type=float, default=6.0, help="excerpt length (the manifest's rows)")
    music.add_argument("--max-piece-seconds", type=float, default=60.0, help="longest part of a piece used")
    music.add_argument("--sample-rate", type=int, default=16000)
    _common(music)
    music.set_defaults(func=run_music)

    speech = kinds.add_parser(
        "speech", formatter_class=HelpFormatter,
        help="English sentences read by espeak-ng in several voices, with their text",
        description="Sentences of the Debian package fortunes (quotations and proverbs) read by espeak-ng in "
                    "several voices (the speaker column), with the text of each clip in the manifest's text "
                    "column; split by sentence. Needs the Debian packages espeak-ng and fortunes (--install runs "
                    "apt-get).")
    speech.add_argument("out", metavar="DIR")
    speech.add_argument("--sentences", type=int, default=600, help="number of distinct sentences")
    speech.add_argument("--speakers", nargs="+", help="voices (default: all six)")
    speech.add_argument("--voices-per-sentence", type=int, default=1, help="how many voices read each sentence")
    _common(speech)
    speech.set_defaults(func=run_speech)


def _common(p) -> None:
    p.add_argument("--seed", type=int, default=0, help="chooses the pieces / sentences, voices and splits")
    p.add_argument("--held-out", type=float, default=0.1, help="share of pieces / sentences in validation (and as "
                                                               "many in test)")
    p.add_argument("--jobs", type=int, help="parallel renderers (default: the CPU count)")
    p.add_argument("--install", action="store_true", help="apt-get install the missing Debian packages")
    p.add_argument("--overwrite", action="store_true", help="make the corpus again in a DIR that holds one")


def _make(make, describe, args, **kwargs) -> int:
    """Check the flags shared by both kinds and DIR (writable: created if needed), then make the corpus."""
    from melnet_fast.corpus_makers import MissingTool
    from melnet_fast.train.preflight import writable_directory

    in_range(args.held_out, "--held-out", 0, 0.5, high_open=True)  # validation and test each take this share
    in_range(args.jobs, "--jobs", 1, integer=True)
    writable_directory(args.out, "DIR")
    start = time.perf_counter()
    try:
        summary = make(args.out, seed=args.seed, held_out=args.held_out, jobs=args.jobs, install=args.install,
                       overwrite=args.overwrite, **kwargs)
    except (MissingTool, ValueError) as e:
        raise UserError(str(e)) from None
    print(f"{args.out}: {describe(summary)} ({time.perf_counter() - start:.0f} s)")
    print(f"next: melnet-fast train --data {args.out}/manifest.csv --preset small --out RUN_DIR")
    return 0


def _known(values, known, arg: str) -> tuple:
    """values (None: all of known) as a tuple; UserError naming `arg` for a value not in known."""
    unknown = [v for v in values or () if v not in known]
    if unknown:
        raise UserError(f"{arg}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    return tuple(values or known)


def run_music(args) -> int:
    from melnet_fast.corpus_makers.music import (
        COLLECTIONS,
        MIN_EXCERPT_SECONDS,
        MIN_SAMPLE_RATE,
        describe,
        make_music_corpus,
    )

    labels = _known(args.labels, tuple(COLLECTIONS), "--labels")
    in_range(args.pieces, "--pieces", 1, integer=True)
    in_range(args.clip_seconds, "--clip-seconds", MIN_EXCERPT_SECONDS)
    in_range(args.max_piece_seconds, "--max-piece-seconds", args.clip_seconds)
    in_range(args.sample_rate, "--sample-rate", MIN_SAMPLE_RATE, integer=True)
    return _make(make_music_corpus, describe, args, labels=labels, pieces_per_label=args.pieces,
                 clip_seconds=args.clip_seconds, max_piece_seconds=args.max_piece_seconds,
                 sample_rate=args.sample_rate)


def run_speech(args) -> int:
    from melnet_fast.corpus_makers.speech import VOICES, describe, make_speech_corpus

    speakers = _known(args.speakers, tuple(VOICES), "--speakers")
    in_range(args.sentences, "--sentences", 1, integer=True)
    in_range(args.voices_per_sentence, "--voices-per-sentence", 1, len(speakers), integer=True)
    return _make(make_speech_corpus, describe, args, n_sentences=args.sentences, speakers=speakers,
                 voices_per_sentence=args.voices_per_sentence)
