"""Speech to whole-face animation: the high-level call, region mixing, and the `.npz` contract.

    python -m model.animate speech.wav --out anim.npz [--variants 4] [--seed 0] [--temperature 1.0]
                                                      [--argmax] [--device auto|cpu|cuda]

Pipeline: audio -> log-mel -> per-frame windows -> audio codes -> codes sampled from the context
model (K variants in one batch) -> vertex decoder on the template; the stages run in chunks of
frames (bounded memory) and overlap (`speech_to_vertices`).
Variants share the lips: every variant's mouth region is variant 0's (the audio determines the
mouth), blended by the template's soft mouth weights; the upper faces are the variants' own.
"""

import argparse
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .audio import AudioError, frame_windows, load_audio, log_mel, normalize_loudness, num_frames
from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, pick_device
from .npz import save_npz
from .sampler import sample_codes
from .worker import OrderedWorker
from .template import Template, load_template

# Frames per chunk of the overlapped stages (speech_to_vertices). The sampler waits for the first
# chunk's audio codes, and on 2 busy cores the encoder runs about as fast as the sampler, so a
# short chunk keeps that wait short: 60 s clips ran at 35-36x real time with 512 frames (0.3 s
# waiting for the first chunk), 38-40x with 128. The encoder's and the decoder's own throughput
# barely depend on it between 128 and 512.
AUDIO_CHUNK_FRAMES = 128


@dataclass
class Animation:
    """K sampled variants of a face animation at `fps`; frame t is at t / fps from the audio's start."""

    vertices: np.ndarray  # float32 [K, T, V, 3] metres, Blender axes
    codes: np.ndarray  # int64 [K, T, H] the sampled categorical codes
    fps: float
    seed: int
    temperature: float
    model_version: str


@lru_cache(maxsize=2)
def cached_checkpoint(checkpoint: str, device: str):
    """`load_checkpoint(checkpoint, device)`, read once per (path, device) and process."""
    return load_checkpoint(checkpoint, device)


def encode_audio(meshtalk, mel: torch.Tensor, first: int, n: int) -> torch.Tensor:
    """Audio codes [n, A] of frames first ... first + n - 1 from log-mel [M, 80]."""
    config = meshtalk.config
    windows = frame_windows(mel, n, config.fps, config.past_s, config.future_s, first_frame=first)
    return meshtalk.audio_codes(windows[None])[0]


@torch.no_grad()
def audio_codes(meshtalk, mel: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Per-frame audio codes [T, A] from log-mel [M, 80], AUDIO_CHUNK_FRAMES frames at a time."""
    return torch.cat([encode_audio(meshtalk, mel, first, min(AUDIO_CHUNK_FRAMES, n_frames - first))
                      for first in range(0, n_frames, AUDIO_CHUNK_FRAMES)])


@torch.no_grad()
def speech_to_vertices(meshtalk, context, mel: torch.Tensor, n_frames: int, template: torch.Tensor, variants: int = 1,
                       **sampling) -> tuple[torch.Tensor, np.ndarray]:
    """Log-mel [M, 80] -> (codes [K,T,H], vertices float32 [K,T,V,3] metres on template [V,3]),
    each variant with its own lips. `sampling`: sample_codes' other keyword arguments.

    The three stages overlap, AUDIO_CHUNK_FRAMES frames at a time: a helper thread encodes the
    audio a chunk ahead of the sampler and another decodes each sampled chunk while the next is
    sampled (torch releases the GIL inside its ops; the sampler is a sequential loop of small
    ops that keeps one core busy). Same result as running them one after another."""
    vertices = np.empty((variants, n_frames, template.shape[0], 3), np.float32)
    if n_frames <= AUDIO_CHUNK_FRAMES:  # one chunk: nothing to overlap, the helper threads only cost
        codes = sample_codes(context, audio_codes(meshtalk, mel, n_frames).to(context.out_weight.dtype),
                             variants=variants, **sampling)
        meshtalk.decode_into(codes, template, vertices)
        return codes, vertices
    audio = torch.empty((n_frames, meshtalk.config.audio_width), dtype=context.out_weight.dtype, device=mel.device)
    decoder_state = None
    decoded = 0  # frames handed to the decoder
    spans = 0  # decoder jobs submitted

    def encode(first):
        n = min(AUDIO_CHUNK_FRAMES, n_frames - first)
        audio[first : first + n] = encode_audio(meshtalk, mel, first, n)

    def decode(span):
        nonlocal decoder_state
        codes, start, stop = span
        decoder_state = meshtalk.decode_into(codes, template, vertices, start, stop, decoder_state)

    def on_chunk(start, stop, codes):
        nonlocal decoded, spans
        encoder.wait(-(-stop // AUDIO_CHUNK_FRAMES))  # the chunks that hold frames < stop
        if start > decoded:
            decoder.submit((codes, decoded, start))
            decoded, spans = start, spans + 1

    encoder = OrderedWorker(encode, "meshtalk-audio")
    decoder = OrderedWorker(decode, "meshtalk-decoder")
    try:
        for first in range(0, n_frames, AUDIO_CHUNK_FRAMES):
            encoder.submit(first)
        codes = sample_codes(context, audio, variants=variants, chunk_frames=AUDIO_CHUNK_FRAMES, on_chunk=on_chunk,
                             **sampling)
        decoder.wait(spans)
    finally:
        encoder.close()
        decoder.close()
    return codes, vertices


def mix_regions(lips_from: np.ndarray, upper_from: np.ndarray, mouth_weights: np.ndarray) -> np.ndarray:
    """Vertices [..., V, 3] with the mouth region (soft weights [V]) of `lips_from` and the rest of `upper_from`."""
    w = mouth_weights[:, None].astype(np.float32)
    return w * lips_from + (1.0 - w) * upper_from


@torch.no_grad()
def animate(
    audio: str | Path | np.ndarray,
    variants: int = 1,
    seed: int = 0,
    temperature: float = 1.0,
    argmax: bool = False,
    device: str = "auto",
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    template: Template | None = None,
    lips_from: np.ndarray | None = None,
    progress=None,
) -> Animation:
    """Animate the template head from speech.

    audio: a file path, or 16 kHz mono samples [N]. variants: K. seed: the sampler's seed.
    temperature: > 0, lower is calmer. argmax: the most likely codes instead of sampling.
    lips_from: vertices [T, V, 3] whose mouth region every variant keeps (re-roll the upper face);
    default: variant 0's own. progress: called with a fraction in [0, 1]; may raise to cancel.
    device: "auto" (the CPU, faster than CUDA for this model: see checkpoint.pick_device), "cpu"
    or "cuda".
    """
    if variants < 1:
        raise ValueError(f"variants must be at least 1, got {variants}")
    if not argmax and temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    template = template or load_template()
    torch_device = pick_device(device, auto_cuda=False)
    config, meshtalk, context, info = cached_checkpoint(str(checkpoint), str(torch_device))
    if config.num_vertices != template.num_vertices:
        raise ValueError(f"the model was trained for {config.num_vertices} vertices, the template has "
                         f"{template.num_vertices}")
    samples = load_audio(audio) if isinstance(audio, (str, Path)) else normalize_loudness(np.asarray(audio, np.float32))
    n_frames = num_frames(len(samples), config.fps)
    mel = log_mel(torch.from_numpy(samples).to(torch_device))
    generator = torch.Generator(torch_device).manual_seed(seed)
    sampling_progress = (lambda f: progress(0.95 * f)) if progress else None
    head = torch.as_tensor(template.vertices, device=torch_device)
    codes, vertices = speech_to_vertices(meshtalk, context, mel, n_frames, head, variants, temperature=temperature,
                                         generator=generator, argmax=argmax, progress=sampling_progress)
    share_lips(vertices, template, lips_from)
    if progress:
        progress(1.0)
    return Animation(vertices, codes.cpu().numpy(), float(config.fps), seed, float(temperature),
                     str(info.get("model_version", "unversioned")))


def decode_variants(meshtalk, codes: torch.Tensor, template: Template, lips_from: np.ndarray | None,
                    own_lips: bool = False) -> np.ndarray:
    """Integer codes [K,T,H] -> vertices float32 [K,T,V,3], lips shared as `share_lips` does
    (unless own_lips: each variant as decoded)."""
    K, T = codes.shape[:2]
    vertices = np.empty((K, T, template.num_vertices, 3), np.float32)
    meshtalk.decode_into(codes, torch.as_tensor(template.vertices, device=codes.device), vertices)
    return vertices if own_lips else share_lips(vertices, template, lips_from)


def share_lips(vertices: np.ndarray, template: Template, lips_from: np.ndarray | None) -> np.ndarray:
    """Give every variant of vertices [K,T,V,3] (in place) the mouth of `lips_from` [T,V,3]
    (default: variant 0, which then stays as it is); returns vertices."""
    lips = vertices[0] if lips_from is None else lips_from
    if lips.shape != vertices.shape[1:]:
        raise ValueError(f"lips_from has shape {lips.shape}, expected {vertices.shape[1:]}")
    for k in range(len(vertices)):
        if lips_from is not None or k > 0:
            vertices[k] = mix_regions(lips, vertices[k], template.mouth_weights)
    return vertices


@torch.no_grad()
def decode(
    codes: np.ndarray,
    device: str = "auto",
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    template: Template | None = None,
    lips_from: np.ndarray | None = None,
    own_lips: bool = False,
) -> np.ndarray:
    """Re-create variants from their codes (`Animation.codes`, int [K,T,H]) without sampling:
    vertices float32 [K,T,V,3] metres, exactly what `animate` returned for them. Variants keep
    the mouth of `lips_from` [T,V,3] (default: variant 0), so storing the codes is enough to
    switch, mix or re-bake variants later. own_lips: every variant keeps the mouth it was
    sampled with (to measure how much samples differ there)."""
    template = template or load_template()
    torch_device = pick_device(device, auto_cuda=False)
    _, meshtalk, _, _ = cached_checkpoint(str(checkpoint), str(torch_device))
    codes = torch.as_tensor(np.asarray(codes), device=torch_device).long()
    return decode_variants(meshtalk, codes, template, lips_from, own_lips)


def save_animation(path: Path | str, animation: Animation, template: Template) -> None:
    """Write the animation contract (README, DESIGN §4) as a pickle-free .npz."""
    save_npz(Path(path), {
        "vertices": animation.vertices, "fps": np.float64(animation.fps),
        "template": template.vertices, "faces": template.faces.astype(np.int32),
        "lip_upper_inner": template.lip_upper_inner, "lip_lower_inner": template.lip_lower_inner,
        "eyelid_upper_L": template.eyelid_upper_L, "eyelid_lower_L": template.eyelid_lower_L,
        "eyelid_upper_R": template.eyelid_upper_R, "eyelid_lower_R": template.eyelid_lower_R,
        "mouth_weights": template.mouth_weights, "upper_face_weights": template.upper_face_weights,
        "seed": np.int64(animation.seed), "temperature": np.float64(animation.temperature),
        "model_version": np.array(animation.model_version),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Animate the template head from speech; writes an .npz.")
    parser.add_argument("audio", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--argmax", action="store_true", help="most likely codes instead of sampling")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args(argv)
    template = load_template()
    try:
        animation = animate(args.audio, args.variants, args.seed, args.temperature, args.argmax, args.device,
                            args.checkpoint, template)
    except (AudioError, CheckpointError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_animation(args.out, animation, template)
    K, T = animation.vertices.shape[:2]
    print(f"wrote {args.out}: {K} variant(s) x {T} frames at {animation.fps:g} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
