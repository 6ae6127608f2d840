"""Speed and memory of the audio-to-vertices path:
`python -m model.bench [--lengths 10 60 600] [--variants 1 4] [--repeats 3] [--device auto|cpu|cuda]`.

Each configuration runs in a fresh process, so its peak resident memory is its own, and is
timed --repeats times: the figures are medians, and "range" gives the animate path's fastest and
slowest run (on a shared 2-core machine single runs of one configuration vary by 20-30 %). Prints
seconds of audio per second of wall time for each stage run on its own (features = log-mel +
audio encoder, sampling = context model, decoding = vertex decoder), their sum ("in turn"), and
the path `model.animate` takes ("animate": the audio encoder runs a chunk ahead of the sampler
and the decoder a chunk behind it, so the stages overlap; the peak memory is this path's), plus
the straightforward reference sampling loop at short lengths. Uses the shipped checkpoint, or
random weights of the default configuration when none is there (speed does not depend on the
values). On CUDA the models, log-mel and template live on the GPU, every timer read waits for the
GPU's queued work, and the peak GPU memory (torch.cuda.max_memory_allocated) is printed beside
the peak resident memory.
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

from .animate import audio_codes, decode_variants, share_lips, speech_to_vertices
from .audio import SAMPLE_RATE, log_mel, normalize_loudness, num_frames
from .checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, pick_device
from .config import ModelConfig
from .context import ContextModel
from .networks import MeshTalk
from .sampler import sample_codes, sample_codes_reference
from .template import load_template

ROOT = Path(__file__).resolve().parent.parent


def _models(device: torch.device):
    if DEFAULT_CHECKPOINT.is_file():
        config, meshtalk, context, _ = load_checkpoint(DEFAULT_CHECKPOINT, device)
        return config, meshtalk, context, "shipped weights"
    config = ModelConfig(num_vertices=load_template().num_vertices)
    return (config, MeshTalk(config).to(device).eval(), ContextModel(config).to(device).eval(),
            "random weights, default config")


def _clock(device: torch.device) -> float:
    """Wall time once the work queued on the device has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _speechlike(seconds: float) -> np.ndarray:
    """Noise bursts at a syllable rate: the model's cost does not depend on what is said."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return normalize_loudness((np.sin(2 * np.pi * 4 * t) > 0) * rng.standard_normal(len(t)).astype(np.float32))


@torch.no_grad()
def measure(seconds: float, variants: int, reference: bool, device: str = "auto", repeats: int = 1) -> dict:
    """One configuration, timed `repeats` times; each time is the median over the repeats. For
    the fast sampler, first the path animate() takes, where the stages overlap
    (`speech_to_vertices`; the peak memory is read right after its first run), then the stages
    one after another for the split."""
    device = pick_device(device, auto_cuda=False)
    config, meshtalk, context, weights = _models(device)
    template = load_template()
    head = torch.as_tensor(template.vertices, device=device)
    audio = _speechlike(seconds)
    frames = num_frames(len(audio), config.fps)
    result = {"seconds": seconds, "variants": variants, "sampler": "reference" if reference else "fast",
              "weights": weights, "repeats": repeats}
    # Warm up first (sampler plan, oneDNN or CUDA kernels, threads), as a loaded model in Blender is.
    warm_up = log_mel(torch.from_numpy(_speechlike(1.0)).to(device))
    speech_to_vertices(meshtalk, context, warm_up, num_frames(SAMPLE_RATE, config.fps), head)
    times = {key: [] for key in ("pipelined_s", "features_s", "sampling_s", "decoding_s", "total_s")}
    for repeat in range(repeats):
        if not reference:
            started = _clock(device)
            mel = log_mel(torch.from_numpy(audio).to(device))
            _, vertices = speech_to_vertices(meshtalk, context, mel, frames, head, variants,
                                             generator=torch.Generator(device).manual_seed(0))
            share_lips(vertices, template, lips_from=None)
            times["pipelined_s"].append(_clock(device) - started)
            if repeat == 0:
                result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                if device.type == "cuda":
                    result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            del vertices
        started = _clock(device)
        mel = log_mel(torch.from_numpy(audio).to(device))
        codes_audio = audio_codes(meshtalk, mel, frames)
        features = _clock(device)
        generator = torch.Generator(device).manual_seed(0)
        if reference:
            codes = sample_codes_reference(context, codes_audio[None].expand(variants, -1, -1), generator=generator)
        else:
            codes = sample_codes(context, codes_audio, variants=variants, generator=generator)
        sampling = _clock(device)
        decode_variants(meshtalk, codes, template, lips_from=None)
        decoding = _clock(device)
        for key, value in (("features_s", features - started), ("sampling_s", sampling - features),
                           ("decoding_s", decoding - sampling), ("total_s", decoding - started)):
            times[key].append(value)
    result.update({key: float(np.median(values)) for key, values in times.items() if values})
    if times["pipelined_s"]:
        result["pipelined_range_s"] = (min(times["pipelined_s"]), max(times["pipelined_s"]))
    result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if device.type == "cuda":
        result.setdefault("peak_gpu_mb", torch.cuda.max_memory_allocated(device) / 2**20)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark the audio-to-vertices path.")
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 600], help="seconds of audio")
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--reference-lengths", type=float, nargs="*", default=[2, 5, 10],
                        help="lengths at which to time the reference O(T^2 H) loop too (K=1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times each fast configuration runs; figures are medians (the reference loop runs once)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return
    try:
        device = pick_device(args.device, auto_cuda=False)
    except RuntimeError as error:
        parser.error(str(error))
    cuda = device.type == "cuda"
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    runs = [dict(seconds=s, variants=k, reference=False, device=str(device), repeats=args.repeats)
            for s in args.lengths for k in args.variants]
    runs += [dict(seconds=s, variants=1, reference=True, device=str(device)) for s in args.reference_lengths]
    print(f"{'audio s':>8} {'K':>2} {'sampler':>9} | {'features':>9} {'sampling':>9} {'decoding':>9} "
          f"{'in turn':>9} {'animate':>9} (x real time) | {'animate s':>9} {'range':>13} {'peak MB':>8}"
          + (f" {'GPU MB':>8}" if cuda else ""))
    for run in runs:
        out = subprocess.run([sys.executable, "-m", "model.bench", "--one", json.dumps(run)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        wall = r.get("pipelined_s", r["total_s"])
        speed = lambda s: f"{r['seconds'] / max(s, 1e-9):>9.1f}" if s is not None else " " * 9  # noqa: E731
        spread = "-".join(f"{s:.2f}" for s in r["pipelined_range_s"]) if "pipelined_range_s" in r else ""
        print(f"{r['seconds']:>8g} {r['variants']:>2} {r['sampler']:>9} | {speed(r['features_s'])} "
              f"{speed(r['sampling_s'])} {speed(r['decoding_s'])} {speed(r['total_s'])} "
              f"{speed(r.get('pipelined_s'))}               | {wall:>9.2f} {spread:>13} {r['peak_rss_mb']:>8.0f}"
              + (f" {r['peak_gpu_mb']:>8.0f}" if cuda else ""), flush=True)
    print(f"weights: {r['weights']}; torch threads: {torch.get_num_threads()}; medians of {args.repeats} runs"
          + (f"; {torch.cuda.get_device_name(device)}" if cuda else ""))


if __name__ == "__main__":
    main()
