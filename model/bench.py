"""Speed and memory of the audio-to-vertices path: `python -m model.bench [--lengths 10 60 600] [--variants 1 4]`.

Each configuration runs in a fresh process, so its peak resident memory is its own. Prints
seconds of audio per second of wall time for each stage (features = log-mel + audio encoder,
sampling = context model, decoding = vertex decoder) and in total, and the straightforward
reference sampling loop at short lengths for comparison. Uses the shipped checkpoint, or random
weights of the default configuration when none is there (speed does not depend on the values).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .animate import decode_variants, audio_codes
from .audio import SAMPLE_RATE, log_mel, normalize_loudness, num_frames
from .checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from .config import ModelConfig
from .context import ContextModel
from .networks import MeshTalk
from .sampler import sample_codes, sample_codes_reference
from .template import load_template

ROOT = Path(__file__).resolve().parent.parent


def _models():
    if DEFAULT_CHECKPOINT.is_file():
        config, meshtalk, context, _ = load_checkpoint(DEFAULT_CHECKPOINT)
        return config, meshtalk, context, "shipped weights"
    config = ModelConfig(num_vertices=load_template().num_vertices)
    return config, MeshTalk(config).eval(), ContextModel(config).eval(), "random weights, default config"


def _speechlike(seconds: float) -> np.ndarray:
    """Noise bursts at a syllable rate: the model's cost does not depend on what is said."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return normalize_loudness((np.sin(2 * np.pi * 4 * t) > 0) * rng.standard_normal(len(t)).astype(np.float32))


@torch.no_grad()
def measure(seconds: float, variants: int, reference: bool) -> dict:
    config, meshtalk, context, weights = _models()
    template = load_template()
    audio = _speechlike(seconds)
    frames = num_frames(len(audio), config.fps)
    started = time.perf_counter()
    codes_audio = audio_codes(meshtalk, log_mel(torch.from_numpy(audio)), frames, config.fps,
                              config.past_s, config.future_s)
    features = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    if reference:
        codes = sample_codes_reference(context, codes_audio[None].expand(variants, -1, -1), generator=generator)
    else:
        codes = sample_codes(context, codes_audio, variants=variants, generator=generator)
    sampling = time.perf_counter()
    decode_variants(meshtalk, codes, template, lips_from=None)  # as animate(): chunked, lips shared
    decoding = time.perf_counter()
    return {
        "seconds": seconds, "variants": variants, "sampler": "reference" if reference else "fast", "weights": weights,
        "features_s": features - started, "sampling_s": sampling - features, "decoding_s": decoding - sampling,
        "total_s": decoding - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark the audio-to-vertices path.")
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 600], help="seconds of audio")
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--reference-lengths", type=float, nargs="*", default=[2, 5, 10],
                        help="lengths at which to time the reference O(T^2 H) loop too (K=1)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return
    runs = [dict(seconds=s, variants=k, reference=False) for s in args.lengths for k in args.variants]
    runs += [dict(seconds=s, variants=1, reference=True) for s in args.reference_lengths]
    print(f"{'audio s':>8} {'K':>2} {'sampler':>9} | {'features':>9} {'sampling':>9} {'decoding':>9} "
          f"{'total':>9} (x real time) | {'total s':>8} {'peak MB':>8}")
    for run in runs:
        out = subprocess.run([sys.executable, "-m", "model.bench", "--one", json.dumps(run)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        speed = lambda key: r["seconds"] / max(r[key], 1e-9)  # noqa: E731
        print(f"{r['seconds']:>8g} {r['variants']:>2} {r['sampler']:>9} | {speed('features_s'):>9.1f} "
              f"{speed('sampling_s'):>9.1f} {speed('decoding_s'):>9.1f} {speed('total_s'):>9.1f}"
              f"               | {r['total_s']:>8.2f} {r['peak_rss_mb']:>8.0f}", flush=True)
    print(f"weights: {r['weights']}; torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
