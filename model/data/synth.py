"""Synthetic talking-face corpus: espeak-ng speech with exact phone timing, and ARKit ground truth.

    python -m model.data.synth --out data/corpus --minutes 60 --seed 0            # train, val, test
    python -m model.data.synth --out data/corpus --minutes 120 --seed 0 --festival-share 0.3
    python -m model.data.synth --out data/corpus --minutes 5 --seed 0 --split val
    python -m model.data.synth --preview --out out/preview                        # contact sheet

Every utterance is a pure function of (seed, split, index), so the same seed gives byte-identical
files with any number of workers. Speakers are voices (accent + variant) with their own pitch,
range and rate, head shape, articulation style and upper-face habits; a speaker says
UTTERANCES_PER_SPEAKER sentences. Splits are disjoint in voices and in sentences.

With `--festival-share S`, about that share of the train split's speakers speak with a Festival
diphone voice (model/data/festival.py: units cut from recorded human speech, exact phone timing)
at their own rate and pitch instead of eSpeak's formant synthesis; the other speakers are the
same as without it. Val and test stay eSpeak, so they are a function of (seed, split, index)
alone; Festival's held-out voice (slt) and real speech are scored by `model.evaluate`.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..audio import num_frames, resample
from . import festival, speech, text
from .coarticulation import ArticulationStyle, loudness_envelope, lower_face_weights, lower_face_weights_ahead
from .corpus import Utterance, write_corpus
from .identity import speaker_head
from .loader import one_thread
from .real_speech import load_real_speech
from .upper_face import MIN_PAUSE_S, UpperFaceStyle, sample_blinks, sample_brow_events, upper_face_weights
from ..template import Template, load_template

FPS = 30
SPLITS = ("train", "val", "test")
SPLIT_SHARE = {"train": 0.8, "val": 0.1, "test": 0.1}
UTTERANCES_PER_SPEAKER = 12
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
LEADING_SILENCE_S = (0.15, 0.5)
TRAILING_SILENCE_S = (0.3, 0.7)
EMPHASIS_LOUDNESS = 0.7  # a stressed vowel this loud (relative to the utterance) is emphasised
FESTIVAL_SPLITS = ("train",)
ESPEAK = "espeak"


def _rng(*keys: int | str) -> np.random.Generator:
    """A generator seeded from any mix of ints and strings, identical on every platform."""
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


@dataclass(frozen=True)
class Speaker:
    name: str
    accent: str
    variant: str
    rate: int  # words per minute
    pitch: int  # espeak 0-100
    pitch_range: int  # espeak 0-100
    articulation: ArticulationStyle
    upper: UpperFaceStyle
    engine: str = ESPEAK  # or a festival.TRAINING_VOICES name, which then replaces accent and variant


def split_voices(split: str) -> list[tuple[str, str]]:
    """(accent, variant) pairs that belong to `split`; disjoint across splits."""
    # Echo variants put a delayed copy of the speech into the pauses: silences would not be silent.
    variants = speech.voice_variants(include_echo=False)
    return [(a, v) for a in speech.ACCENTS for v in variants if text.split_of(f"{a}+{v}") == split]


def draw_speaker(seed: int, split: str, index: int, festival_share: float = 0.0) -> Speaker:
    rng = _rng(seed, split, "speaker", index)
    voices = split_voices(split)
    accent, variant = voices[rng.integers(len(voices))]
    speaker = Speaker(
        name=f"{accent}+{variant}#{index}", accent=accent, variant=variant,
        rate=int(rng.integers(130, 200)), pitch=int(rng.integers(25, 75)), pitch_range=int(rng.integers(30, 80)),
        articulation=ArticulationStyle.sample(rng), upper=UpperFaceStyle.sample(rng),
    )
    engine_rng = _rng(seed, split, "engine", index)  # its own stream: eSpeak speakers stay as they were
    if split in FESTIVAL_SPLITS and engine_rng.random() < festival_share:
        voice = festival.TRAINING_VOICES[engine_rng.integers(len(festival.TRAINING_VOICES))]
        speaker = replace(speaker, name=f"festival-{voice}#{index}", engine=voice)
    return speaker


def festival_prosody(voice: speech.Voice) -> festival.Prosody:
    """The Festival prosody of a speaker drawn with eSpeak's settings: rate 175 wpm (eSpeak's
    normal) is Festival's own timing; pitch 25..75 gives an F0 mean of 105..175 Hz."""
    return festival.Prosody(stretch=175.0 / voice.rate, f0_mean=70.0 + 1.4 * voice.pitch,
                            f0_std=0.4 * voice.pitch_range)


def speak(sentence: str, voice: speech.Voice, engine: str) -> speech.Utterance:
    """The sentence in `voice` (eSpeak), or in Festival voice `engine` at that voice's prosody."""
    if engine == ESPEAK:
        return speech.synthesize(sentence, voice)
    audio, phones = festival.synthesize(sentence, engine, festival_prosody(voice))
    return speech.Utterance(audio, phones, [], sentence, voice)


def draw_sentence(seed: int, split: str, index: int) -> str:
    """A sentence whose split (by its text) is `split`."""
    for attempt in range(1000):
        for sentence in text.sentences(int.from_bytes(_rng(seed, split, "text", index, attempt).bytes(4), "little"), 8):
            if text.split_of(sentence) == split:
                return sentence
    raise RuntimeError(f"no {split} sentence found")


def pad_silence(said: speech.Utterance, lead: float, tail: float) -> speech.Utterance:
    """The utterance with `lead` and `tail` seconds of silence added (espeak leaves almost none,
    recordings have some); the first and last SIL phones grow to cover it."""
    n_lead, n_tail = int(round(lead * speech.SAMPLE_RATE)), int(round(tail * speech.SAMPLE_RATE))
    shift = n_lead / speech.SAMPLE_RATE
    end = (n_lead + len(said.audio) + n_tail) / speech.SAMPLE_RATE
    phones = [replace(p, start=p.start + shift, end=p.end + shift) for p in said.phones]
    if phones[0].symbol != speech.SILENCE:
        phones.insert(0, speech.Phone(speech.SILENCE, 0.0, shift, False, -1))
    if phones[-1].symbol != speech.SILENCE:
        phones.append(speech.Phone(speech.SILENCE, phones[-1].end, end, False, -1))
    phones[0], phones[-1] = replace(phones[0], start=0.0), replace(phones[-1], end=end)
    audio = np.concatenate([np.zeros(n_lead, np.float32), said.audio, np.zeros(n_tail, np.float32)])
    words = [replace(w, start=w.start + shift, end=w.end + shift) for w in said.words]
    return replace(said, audio=audio, phones=phones, words=words)


def emphasis_times(phones: list[speech.Phone], audio: np.ndarray) -> list[float]:
    """Phrase nuclei (s): in each stretch between pauses, the centre of the loudest stressed vowel,
    when it is at least EMPHASIS_LOUDNESS loud relative to the utterance."""
    centres = np.array([(p.start + p.end) / 2 for p in phones])
    loudness = loudness_envelope(audio, speech.SAMPLE_RATE, centres)
    nuclei: list[float] = []
    level, nucleus = EMPHASIS_LOUDNESS, None
    for phone, centre, loud in zip(phones, centres, loudness):
        if phone.symbol == speech.SILENCE and phone.end - phone.start >= MIN_PAUSE_S:
            if nucleus is not None:
                nuclei.append(nucleus)
            level, nucleus = EMPHASIS_LOUDNESS, None
        elif phone.symbol in VOWELS and phone.stressed and loud >= level:
            level, nucleus = loud, float(centre)
    if nucleus is not None:
        nuclei.append(nucleus)
    return nuclei


@dataclass
class Generated:
    utterance: Utterance
    blinks: int
    brow_raises: int
    frowns: int
    cpu_seconds: float  # CPU time spent generating it, Festival's processes included


@dataclass
class _Speech:
    """The part of an utterance that follows from its words and voice."""

    speaker_index: int
    speaker: Speaker
    rng: np.random.Generator  # the utterance's own generator, after the speech's draws
    said: speech.Utterance
    phones: list[tuple[str, float, float]]
    times: np.ndarray  # [T] s
    loudness: np.ndarray  # [T] the speech's loudness envelope at `times`
    lower: np.ndarray  # [T, 52] ARKit weights of the speech-driven lower face
    emphasis: list[float]  # s


def _speech_part(seed: int, split: str, index: int, festival_share: float = 0.0) -> _Speech:
    speaker_index = index // UTTERANCES_PER_SPEAKER
    speaker = draw_speaker(seed, split, speaker_index, festival_share)
    rng = _rng(seed, split, "utterance", index)
    voice = speech.Voice(
        accent=speaker.accent, variant=speaker.variant, rate=int(speaker.rate + rng.integers(-15, 16)),
        pitch=int(np.clip(speaker.pitch + rng.integers(-8, 9), 0, 100)),
        pitch_range=int(np.clip(speaker.pitch_range + rng.integers(-10, 11), 0, 100)),
    )
    said = pad_silence(speak(draw_sentence(seed, split, index), voice, speaker.engine),
                       rng.uniform(*LEADING_SILENCE_S), rng.uniform(*TRAILING_SILENCE_S))
    return _speech_of(said, speaker_index, speaker, rng)


def _speech_of(said: speech.Utterance, speaker_index: int, speaker: Speaker, rng: np.random.Generator) -> _Speech:
    """The speech-driven part of a face for `said`, spoken by `speaker` with its articulation."""
    phones = [(p.symbol, p.start, p.end) for p in said.phones]
    times = np.arange(num_frames(len(said.audio), FPS)) / FPS
    loudness = loudness_envelope(said.audio, speech.SAMPLE_RATE, times)
    return _Speech(speaker_index, speaker, rng, said, phones, times, loudness,
                   lower_face_weights(phones, times, loudness, speaker.articulation),
                   emphasis_times(said.phones, said.audio))


def _with_free_motion(part: _Speech, rng: np.random.Generator) -> tuple[np.ndarray, list, list]:
    """(ARKit weights [T, 52], blinks, brow events): the speech's lower face plus the motion that
    does not follow the speech (blinks, brows, gaze, idle micro-motion) drawn from `rng`."""
    duration = len(part.said.audio) / speech.SAMPLE_RATE
    style = part.speaker.upper
    blinks = sample_blinks(duration, part.phones, style, rng)
    brows = sample_brow_events(duration, np.array(part.emphasis), style, rng)
    weights = np.clip(part.lower + upper_face_weights(part.times, FPS, blinks, brows, style, rng), 0.0, 1.0)
    return weights.astype(np.float32), blinks, brows


def _cpu_seconds() -> float:
    """CPU time of this process and of the child processes it has waited for (Festival)."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def generate_utterance(seed: int, split: str, index: int, festival_share: float = 0.0) -> Generated:
    """Utterance `index` of a split: speech, phones and ARKit weights [T, 52] at FPS."""
    cpu_started = _cpu_seconds()
    part = _speech_part(seed, split, index, festival_share)
    weights, blinks, brows = _with_free_motion(part, part.rng)
    return Generated(
        Utterance(part.said.audio, weights, part.speaker_index, part.phones, part.said.text),
        blinks=len(blinks), brow_raises=sum(e.kind == "raise" for e in brows),
        frowns=sum(e.kind == "frown" for e in brows), cpu_seconds=_cpu_seconds() - cpu_started,
    )


def redraw_free_motion(seed: int, split: str, index: int, draws: int) -> np.ndarray:
    """ARKit weights [draws, T, 52] of utterance `index` with its speech and lower face as generated
    and `draws` fresh draws of the motion that does not follow the speech: what a sampler that
    matched the data exactly would produce."""
    part = _speech_part(seed, split, index)
    return np.stack([_with_free_motion(part, _rng(seed, split, "redraw", index, k))[0] for k in range(draws)])


def lower_face_in_style(seed: int, split: str, index: int, style: ArticulationStyle,
                        lookahead_s: float | None = None) -> np.ndarray:
    """ARKit weights [T, 52] of utterance `index`'s speech-driven lower face (no free motion) as a
    speaker with articulation `style` would move it: from the exact phones and loudness, so a
    yardstick for lip sync that knows everything the audio carries but not the speaker's style.
    With `lookahead_s`, each frame knows only the phones begun by then (`lower_face_weights_ahead`)."""
    part = _speech_part(seed, split, index)
    weights = (lower_face_weights(part.phones, part.times, part.loudness, style) if lookahead_s is None else
               lower_face_weights_ahead(part.phones, part.times, part.loudness, style, lookahead_s))
    return np.clip(weights, 0.0, 1.0).astype(np.float32)


def _generate_job(job: tuple[int, str, int, float]) -> Generated:
    return generate_utterance(*job)


def generate_split(seed: int, split: str, minutes: float, workers: int, progress=print,
                   festival_share: float = 0.0) -> tuple[list[Generated], float]:
    """Utterances 0, 1, ... until they hold `minutes` of audio; returns them and the CPU-seconds
    their generation took (in whichever worker; pool start-up not included)."""
    target, total, done = minutes * 60.0, 0.0, []
    batch = 4 * max(workers, 1)
    started = time.time()
    torch.set_num_threads(1)  # resampling, here and (one_thread) in the workers
    with multiprocessing.get_context("spawn").Pool(workers, one_thread) if workers > 1 else _Serial() as pool:
        index = 0
        while total < target:
            jobs = [(seed, split, i, festival_share) for i in range(index, index + batch)]
            for generated in pool.map(_generate_job, jobs):
                if total >= target:
                    break
                done.append(generated)
                total += len(generated.utterance.audio) / speech.SAMPLE_RATE
            index += batch
            progress(f"  {split}: {total / 60:.1f} / {minutes:.1f} min of speech, {len(done)} utterances, "
                     f"{time.time() - started:.0f} s")
    return done, sum(g.cpu_seconds for g in done)


class _Serial:
    """Stands in for a process pool when one worker is asked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, jobs):
        return [fn(job) for job in jobs]


def split_statistics(generated: list[Generated]) -> dict:
    seconds = sum(len(g.utterance.audio) for g in generated) / speech.SAMPLE_RATE
    minutes = seconds / 60.0
    phones = [[p[0] for p in g.utterance.phones] for g in generated]
    return {
        "utterances": len(generated), "seconds": round(seconds, 1),
        "speakers": len({g.utterance.speaker for g in generated}),
        "blinks_per_min": round(sum(g.blinks for g in generated) / minutes, 2),
        "brow_raises_per_min": round(sum(g.brow_raises for g in generated) / minutes, 2),
        "frowns_per_min": round(sum(g.frowns for g in generated) / minutes, 2),
        "coverage": text.phone_coverage(phones),
    }


def write_split(out: Path, seed: int, split: str, minutes: float, workers: int, template: Template,
                festival_share: float = 0.0) -> dict:
    generated, cpu = generate_split(seed, split, minutes, workers, festival_share=festival_share)
    speakers = sorted({g.utterance.speaker for g in generated})
    row = {s: i for i, s in enumerate(speakers)}
    utterances = [g.utterance for g in generated]
    for u in utterances:
        u.speaker = row[u.speaker]
    names = [draw_speaker(seed, split, s, festival_share).name for s in speakers]
    heads = np.stack([speaker_head(template.vertices, _rng(seed, split, "head", s)) for s in speakers])
    path = out / f"{split}.npz"
    write_corpus(path, utterances, heads, names, FPS, speech.SAMPLE_RATE, seed, split)
    stats = split_statistics(generated)
    festival_seconds = sum(len(u.audio) for u in utterances if names[u.speaker].startswith("festival-"))
    stats.update(festival_share=festival_share, festival_seconds=round(festival_seconds / speech.SAMPLE_RATE, 1))
    stats.update(cpu_seconds=round(cpu, 1), speed_x=round(stats["seconds"] / max(cpu, 1e-9), 1),
                 bytes=path.stat().st_size, mb_per_hour=round(path.stat().st_size / 1e6 / (stats["seconds"] / 3600), 1))
    report = (f"# Corpus split `{split}` (seed {seed})\n\n" + "\n".join(
        f"- {k}: {v}" for k, v in stats.items() if k != "coverage") + "\n\n## Phone coverage\n\n"
        + text.coverage_table(stats["coverage"]) + "\n")
    (out / f"{split}_report.md").write_text(report)
    return stats


RECORDED_SPLIT = "recorded"
# Speed perturbation of recorded clips (tempo and pitch together, as speech recognisers train):
# rates a multiple of 400 Hz from the clip's, so resampling to 16 kHz stays cheap.
RECORDED_SPEEDS = tuple(rate / speech.SAMPLE_RATE for rate in range(14400, 17601, 400))


def tiled_phones(phones: list[tuple[str, float, float]], duration: float, speed: float = 1.0) -> list[speech.Phone]:
    """Aligned (symbol, start s, end s) phones at `speed`, with pauses filled in as SIL so that
    they tile 0 .. duration / speed seconds; vowels count as stressed (an aligner gives no stress)."""
    tiled, cursor = [], 0.0
    for symbol, start, end in phones:
        start, end = max(start / speed, cursor), min(end / speed, duration / speed)
        if start > cursor:
            tiled.append(speech.Phone(speech.SILENCE, cursor, start, False, -1))
        if end > start:
            tiled.append(speech.Phone(symbol, start, end, symbol in VOWELS, -1))
            cursor = end
    if cursor < duration / speed:
        tiled.append(speech.Phone(speech.SILENCE, cursor, duration / speed, False, -1))
    return tiled


def recorded_utterance(seed: int, index: int, copy: int, audio: np.ndarray,
                       phones: list[tuple[str, float, float]], sentence: str) -> Generated:
    """Copy `copy` of recorded clip `index` (16 kHz samples [N], its aligned phones): the recording
    at a drawn speed, with the face of a drawn articulation and upper-face style."""
    cpu_started = _cpu_seconds()
    rng = _rng(seed, RECORDED_SPLIT, "copy", index, copy)
    speed = RECORDED_SPEEDS[rng.integers(len(RECORDED_SPEEDS))]
    speeded = resample(audio, round(speed * speech.SAMPLE_RATE), speech.SAMPLE_RATE).astype(np.float32)
    said = speech.Utterance(speeded, tiled_phones(phones, len(audio) / speech.SAMPLE_RATE, speed), [], sentence, None)
    speaker = Speaker(name=f"recorded#{index}.{copy}", accent=RECORDED_SPLIT, variant=str(index), rate=0, pitch=0,
                      pitch_range=0, articulation=ArticulationStyle.sample(rng), upper=UpperFaceStyle.sample(rng),
                      engine=RECORDED_SPLIT)
    part = _speech_of(said, 0, speaker, rng)
    weights, blinks, brows = _with_free_motion(part, rng)
    return Generated(
        Utterance(speeded, weights, 0, part.phones, sentence),
        blinks=len(blinks), brow_raises=sum(e.kind == "raise" for e in brows),
        frowns=sum(e.kind == "frown" for e in brows), cpu_seconds=_cpu_seconds() - cpu_started,
    )


def write_recorded_split(out: Path, seed: int, recordings: Path, copies: int, template: Template) -> dict:
    """`out/recorded.npz`: every aligned clip in `recordings` (model.data.recordings) `copies` times,
    each copy its own speaker (speed, head, articulation and upper-face habits drawn anew)."""
    clips = load_real_speech(recordings)
    sentences = [(recordings / f"{name}.txt").read_text().strip() for name, _, _ in clips]
    generated = []
    for copy in range(copies):
        for index, (_, audio, phones) in enumerate(clips):
            g = recorded_utterance(seed, index, copy, audio, phones, sentences[index])
            g.utterance.speaker = len(generated)
            generated.append(g)
    heads = np.stack([speaker_head(template.vertices, _rng(seed, RECORDED_SPLIT, "head", s))
                      for s in range(len(generated))])
    names = [f"{name}#{copy}" for copy in range(copies) for name, _, _ in clips]
    path = out / f"{RECORDED_SPLIT}.npz"
    write_corpus(path, [g.utterance for g in generated], heads, names, FPS, speech.SAMPLE_RATE, seed, RECORDED_SPLIT)
    stats = split_statistics(generated)
    stats.update(clips=len(clips), copies=copies, bytes=path.stat().st_size)
    (out / f"{RECORDED_SPLIT}_report.md").write_text(
        f"# Corpus split `{RECORDED_SPLIT}` (seed {seed}, {copies} copies of {recordings})\n\n" + "\n".join(
            f"- {k}: {v}" for k, v in stats.items() if k != "coverage") + "\n\n## Phone coverage\n\n"
        + text.coverage_table(stats["coverage"]) + "\n")
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic talking-face corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of speech in all (or in --split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, help="one split only (default: all, 80/10/10)")
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--festival-share", type=float, default=0.0,
                        help="share of the train split's speakers voiced by Festival's diphone voices "
                             "(needs festival; model/data/festival.py)")
    parser.add_argument("--recordings", type=Path,
                        help="write the `recorded` split instead: faces for the aligned recordings in this folder "
                             "(python -m model.data.recordings)")
    parser.add_argument("--recording-copies", type=int, default=16,
                        help="copies of each recording, each at its own speed and with its own face")
    parser.add_argument("--preview", action="store_true", help="write a preview contact sheet instead")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.preview:
        from .preview import write_preview

        for path in write_preview(args.out, args.seed):
            print(f"wrote {path}")
        return
    template = load_template()
    if args.recordings:
        if args.recording_copies < 1:
            parser.error("--recording-copies must be at least 1")
        stats = write_recorded_split(args.out, args.seed, args.recordings, args.recording_copies, template)
        print(json.dumps({k: v for k, v in stats.items() if k != "coverage"}))
        print(f"wrote {args.out / f'{RECORDED_SPLIT}.npz'}")
        return
    splits = [args.split] if args.split else list(SPLITS)
    for split in splits:
        minutes = args.minutes if args.split else args.minutes * SPLIT_SHARE[split]
        stats = write_split(args.out, args.seed, split, minutes, args.workers, template, args.festival_share)
        print(json.dumps({k: v for k, v in stats.items() if k != "coverage"}))
    print(f"wrote {', '.join(str(args.out / f'{s}.npz') for s in splits)}")


if __name__ == "__main__":
    main()
