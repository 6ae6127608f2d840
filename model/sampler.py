"""Sampling codes from the context model (model/context.py), given per-frame audio codes.

Two samplers that draw exactly the same samples from the same randomness:

* ``sample_codes_reference``: the straightforward loop of the reference code. For every frame t
  and head h it runs the full model over all frames so far (codes grown by concatenation) and
  samples logits[:, t, h]. Cost O(T^2 H) full forwards; for tests and benchmarks.
* ``sample_codes``: the fast sampler. Linear in T, memory O(T*H) for the output plus
  O(receptive field) state. K variants run as one batch.

Randomness (shared by both): Gumbel-max. For every variant k, frame t, head h there is a Gumbel
vector g[k, t, h, :] (C values) and the sample is

    code[k, t, h] = argmax_c( logits[k, t, h, c] / temperature + g[k, t, h, c] )

which is an exact sample of softmax(logits / temperature). ``noise=`` passes g [K, T, H, C]
directly; otherwise g is drawn from ``generator`` (or torch's default generator) in fixed blocks
of NOISE_BLOCK frames, in time order, each block one ``torch.rand((K, n, H, C))`` call, so the
same generator state gives the same noise whatever the chunking. ``argmax=True`` takes the
mode (argmax of the logits) and draws nothing.

How ``sample_codes`` is fast (the model is described in context.py):

1. Past taps. Layer i at frame t reads frame t - d_i, known before frame t starts. Layer 0 reads
   the code embeddings, so its past tap is a sum of H precomputed rows (table[h*C + code] =
   embedding @ W_past block). Layers i >= 1 keep a ring buffer of the last d_i frames of what
   their tap reads and, every d_i frames, compute the taps of the next d_i frames in one matmul
   (the weights are read once per batch). The audio projections of all layers are one matmul
   per chunk of frames.
2. Heads within a frame. With the A/B masks head h depends on every lower head of its frame, so
   heads are sampled one at a time, but each head computes only its own E-wide slice of every
   layer. Layer 0 (mask A): once head h is sampled, its class's precomputed row (embedding @
   W_cur block) is *pushed* into the pre-activations of all higher heads (one gather + add).
   Layers >= 1 (mask B): head h *pulls* from the outputs of heads <= h of the layer below with
   one [K, (h+1)E] x [(h+1)E, E] matmul; the residual is folded in as y + relu(z) =
   max(y + z, y) by adding the identity to the diagonal block. Then E x C logits and the
   Gumbel-max argmax. About 16 numpy calls per head; the arithmetic per frame is less than one
   dense forward of one frame (the masked weights are used once, the zero blocks never).
3. The per-head loop runs in numpy on the CPU, whatever the model's device: at K = 1 its cost
   is the calls themselves (~0.3-1.5 us each in numpy, 1-5 us in torch, a kernel launch each on
   a GPU), not arithmetic. The audio projections are computed on the model's device and the
   codes returned there.
4. Memory: the output [K, T, H], the ring buffers (receptive field), and one chunk of audio
   projections and noise; nothing grows with T otherwise.
"""

import math
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch

from .context import ContextModel

NOISE_BLOCK = 256  # frames of Gumbel noise drawn per generator call (fixes the random stream)
DEFAULT_CHUNK_FRAMES = 512  # frames of audio projections held at once by sample_codes
DEFAULT_PROGRESS_EVERY = 32  # frames between progress callbacks


class SamplingCancelled(Exception):
    """Raise this from a progress callback to stop sampling (any exception works; this one is tidy)."""


@contextmanager
def _torch_threads(n: int | None):
    """Run with torch's intra-op threads set to n (None: unchanged); restores the setting."""
    old = torch.get_num_threads()
    if n is None or int(n) == old:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _param(model: ContextModel) -> torch.Tensor:
    return model.out_weight


def _prepare(model, audio, variants, noise):
    """audio [T, A] or [Ka, T, A] -> ([Ka, T, A] on the model's device/dtype, K)."""
    p = _param(model)
    if audio.dim() == 2:
        audio = audio.unsqueeze(0)
    if audio.dim() != 3 or audio.shape[2] != model.audio_width:
        a = model.audio_width
        raise ValueError(f"audio must be [T, {a}] or [K, T, {a}], got {tuple(audio.shape)}")
    audio = audio.to(device=p.device, dtype=p.dtype)
    ka = audio.shape[0]
    variants = int(variants)
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    if ka == 1:
        k = variants
    elif variants in (1, ka):
        k = ka
    else:
        raise ValueError(f"audio has {ka} variants but variants={variants}")
    if noise is not None:
        expected = (k, audio.shape[1], model.heads, model.classes)
        if noise.shape[0] != k and ka == 1 and variants == 1:
            k = noise.shape[0]
            expected = (k,) + expected[1:]
        if tuple(noise.shape) != expected:
            raise ValueError(f"noise must be [K, T, H, C] = {expected}, got {tuple(noise.shape)}")
    return audio, k


def _check_temperature(temperature: float, argmax: bool) -> float:
    temperature = float(temperature)
    if not argmax and not (temperature > 0.0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    return temperature


class GumbelNoise:
    """Gumbel noise g [K, T, H, C], served in time order, drawn in blocks of NOISE_BLOCK frames.

    Either wraps a given tensor (``noise``) or draws block b (frames b*NOISE_BLOCK ...) with one
    ``torch.rand((K, n, H, C), generator=generator)`` call when first needed. Frames must be
    requested in non-decreasing order; only the current block is kept.
    """

    def __init__(self, k, frames, heads, classes, *, device, dtype, generator=None, noise=None):
        self.shape = (k, frames, heads, classes)
        self.device, self.dtype, self.generator = device, dtype, generator
        self.noise = None if noise is None else noise.to(device=device, dtype=dtype)
        self._block = -1
        self._data = None

    def _draw(self, block: int) -> torch.Tensor:
        k, frames, heads, classes = self.shape
        n = min(NOISE_BLOCK, frames - block * NOISE_BLOCK)
        device = self.generator.device if self.generator is not None else self.device
        u = torch.rand((k, n, heads, classes), generator=self.generator, device=device, dtype=self.dtype)
        u = u.to(self.device).clamp_min_(torch.finfo(self.dtype).tiny)
        return u.log_().neg_().log_().neg_()

    def frames(self, t0: int, t1: int) -> torch.Tensor:
        """Noise for frames [t0, t1): [K, t1 - t0, H, C]."""
        if self.noise is not None:
            return self.noise[:, t0:t1]
        parts = []
        t = t0
        while t < t1:
            block = t // NOISE_BLOCK
            if block != self._block:
                if block < self._block:
                    raise RuntimeError("GumbelNoise frames must be requested in time order")
                while self._block < block:  # draw (and skip) blocks in order
                    self._block += 1
                    self._data = self._draw(self._block)
            start = t - block * NOISE_BLOCK
            stop = min(t1, (block + 1) * NOISE_BLOCK) - block * NOISE_BLOCK
            parts.append(self._data[:, start:stop])
            t += stop - start
        if not parts:
            k, _, heads, classes = self.shape
            return torch.empty((k, 0, heads, classes), device=self.device, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


@torch.no_grad()
def sample_codes_reference(
    model: ContextModel,
    audio: torch.Tensor,
    temperature: float = 1.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    argmax: bool = False,
    variants: int = 1,
) -> torch.Tensor:
    """Reference sampler: for t, for h, a full forward over frames 0..t. Returns codes [K, T, H].

    audio: [T, A] or [1 or K, T, A] audio codes. noise: Gumbel [K, T, H, C] (else drawn from
    generator, see GumbelNoise). Cost O(T^2 H); use sample_codes for real work.
    """
    temperature = _check_temperature(temperature, argmax)
    audio, k = _prepare(model, audio, variants, noise)
    T, H = audio.shape[1], model.heads
    p = _param(model)
    if not argmax:
        gumbel = GumbelNoise(
            k, T, H, model.classes, device=p.device, dtype=p.dtype, generator=generator, noise=noise
        ).frames(0, T)
    codes = torch.zeros((k, 0, H), dtype=torch.long, device=p.device)
    for t in range(T):
        codes = torch.cat([codes, torch.zeros((k, 1, H), dtype=torch.long, device=p.device)], 1)
        for h in range(H):
            logits = model(codes, audio[:, : t + 1])[:, t, h]
            score = logits if argmax else logits / temperature + gumbel[:, t, h]
            codes[:, t, h] = score.argmax(-1)
    return codes


class _Plan:
    """Weights of a ContextModel rearranged for incremental sampling on the CPU.

    Built once per set of parameter values (~0.1 s for the released size) and cached on the model
    (about 33 MB at H=16, E=64, C=128; rebuilt when a parameter changes in place or is replaced);
    the temperature is applied per call (it only scales the E x C logits weights). The per-head
    arrays are numpy (float64 for a float64 model, else float32): numpy's call overhead on such
    tiny arrays is a third to a half of torch's. The past taps' weights stay torch tensors on the
    CPU, so that their matmuls honour torch's thread count (numpy's BLAS keeps its own threads);
    the audio projection stays on the model's device.
    """

    def __init__(self, model: ContextModel):
        H, C, E = model.heads, model.classes, model.width
        self.H, self.C, self.E, self.L = H, C, E, len(model.layers)
        self.dilations = model.dilations
        self.dtype = torch.float64 if _param(model).dtype == torch.float64 else torch.float32

        def cpu(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach().to(device="cpu", dtype=self.dtype).contiguous()

        emb = cpu(model.embedding.weight).reshape(H, C, E)
        layers = model.layers
        cur = [cpu(layer.masked_current_weight()).t() for layer in layers]  # [in, out]
        past = [cpu(layer.past.weight).t() for layer in layers]
        eye = torch.eye(E, dtype=self.dtype)
        # Layer 0, current tap (mask A): a sampled class c of head h adds table0[h][c] to the
        # pre-activations of heads > h ("push": one row per head instead of a matmul).
        self.table0 = [(emb[h] @ cur[0][h * E : (h + 1) * E, (h + 1) * E :]).numpy() for h in range(H - 1)]
        # Layer 0, past tap: sum over heads of rows h*C + code[t-d_0, h].
        self.past0 = torch.cat([emb[h] @ past[0][h * E : (h + 1) * E] for h in range(H)], 0).numpy()  # [H*C, H*E]
        # Layers >= 1, current tap (mask B), "pull": head h's pre-activation reads the outputs of
        # heads <= h of the previous layer: a [(h+1)*E, E] column block. The identity added to the
        # diagonal block folds in the residual: y_i = max(y_{i-1} + z, y_{i-1}) = y_{i-1} + relu(z).
        self.pull = [None]
        for i in range(1, self.L):
            blocks = []
            for h in range(H):
                w = cur[i][: (h + 1) * E, h * E : (h + 1) * E].clone()
                w[h * E :] += eye
                blocks.append(w.numpy())
            self.pull.append(blocks)
        self.past = [None] + [w.contiguous() for w in past[1:]]  # torch: read y_{i-1} + x0 at t - d_i
        self.embedding = emb.reshape(H * C, E).numpy()  # row h*C + c
        self.audio_weight = torch.cat([layer.audio.weight.detach() for layer in layers], 0).t().contiguous()
        self.audio_bias = torch.cat([layer.audio.bias.detach() for layer in layers], 0)
        self.out_weight = cpu(model.out_weight).numpy()  # [H, E, C]
        self.out_bias = cpu(model.out_bias).numpy()  # [H, C]
        self.head_offsets = np.arange(H) * C

    @staticmethod
    def of(model: ContextModel) -> "_Plan":
        """The cached plan of model, rebuilt when any parameter changed (in place or replaced)."""
        key = tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())
        cached = model.__dict__.get("_sampling_plan")
        if cached is not None and cached[0] == key:
            return cached[1]
        plan = _Plan(model)
        model.__dict__["_sampling_plan"] = (key, plan)
        return plan


def sample_codes(
    model: ContextModel,
    audio: torch.Tensor,
    variants: int = 1,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    argmax: bool = False,
    chunk_frames: int | None = None,
    noise: torch.Tensor | None = None,
    progress: Callable[[float], None] | None = None,
    progress_every: int = DEFAULT_PROGRESS_EVERY,
    num_threads: int | None = 1,
    on_chunk: Callable[[int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Sample codes [K, T, H] (int64) from the context model given audio codes.

    audio: [T, A] (shared by all variants) or [K, T, A]. variants: K when audio is shared.
    temperature: logits are divided by it (> 0). generator: a torch.Generator for reproducible
    noise (else torch's default one). argmax: take the most likely class, no randomness.
    chunk_frames: frames of audio projections computed at once (bounds memory; the result does
    not depend on it). noise: Gumbel noise [K, T, H, C] instead of drawing it.
    progress: called as progress(fraction done) every ``progress_every`` frames and at the end;
    raise from it (e.g. SamplingCancelled) to cancel.

    num_threads: torch intra-op threads while sampling (restored afterwards; None: leave as is),
    for the past taps' and audio projections' matmuls. The loop is ~270 tiny sequential calls per
    frame that gain nothing from threads, and on a busy machine multi-threaded ops stall badly
    (measured 10x slower on 2 loaded cores).
    on_chunk: called as on_chunk(start, stop, codes) before frames start ... stop - 1 are sampled
    (a chunk at a time) and once more as on_chunk(T, T, codes) at the end; `codes` is the output
    [K, T, H], final for frames < start. Frames < stop of `audio` are first read after it
    returns, so another thread may still be filling `audio` in while sampling runs (it must
    then be on the model's device and dtype, so that it is used as is, not copied), and the
    finished frames may be decoded while later ones are sampled (model/animate.py).

    Gives the same codes as sample_codes_reference for the same noise/generator state (up to
    float rounding of near-ties, which does not occur in float64 tests).
    """
    with _torch_threads(num_threads):
        return _sample_codes(
            model,
            audio,
            variants,
            temperature,
            generator,
            argmax,
            chunk_frames,
            noise,
            progress,
            progress_every,
            on_chunk,
        )


@torch.no_grad()
def _sample_codes(
    model, audio, variants, temperature, generator, argmax, chunk_frames, noise, progress, progress_every, on_chunk,
):
    temperature = _check_temperature(temperature, argmax)
    given = audio
    audio, K = _prepare(model, audio, variants, noise)
    if on_chunk is not None and audio.data_ptr() != given.data_ptr():
        raise ValueError("with on_chunk, audio must be on the model's device and dtype (it is read as it fills)")
    T = audio.shape[1]
    p = _param(model)
    device, dtype = p.device, p.dtype
    plan = _Plan.of(model)
    H, C, E, L, dil = plan.H, plan.C, plan.E, plan.L, plan.dilations
    HE = H * E
    ftype = plan.out_bias.dtype
    scale = 1.0 if argmax else 1.0 / temperature
    out_weight = [plan.out_weight[h] * ftype.type(scale) for h in range(H)]  # [E, C], logits / temperature
    out_bias = plan.out_bias * ftype.type(scale)
    out = torch.empty((K, T, H), dtype=torch.long, device=device)
    if T == 0:
        return out
    # The loop writes numpy codes on the CPU; `out` is a view of them there, else a copy made as
    # each chunk finishes (`publish`).
    codes_np = out.numpy() if device.type == "cpu" else np.empty((K, T, H), np.int64)
    published = 0

    def publish(stop: int):
        nonlocal published
        if device.type != "cpu" and stop > published:
            out[:, published:stop] = torch.from_numpy(codes_np[:, published:stop]).to(device)
        published = max(published, stop)

    chunk = int(chunk_frames) if chunk_frames else DEFAULT_CHUNK_FRAMES
    if chunk < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    progress_every = max(1, int(progress_every))
    gumbel = None
    if not argmax:
        gumbel = GumbelNoise(K, T, H, C, device=device, dtype=dtype, generator=generator, noise=noise)

    # State at the current frame t (numpy, on the CPU):
    # acc[i]   pre-activations of layer i from its past tap and the audio; layer 0 also receives
    #          the pushes of the heads sampled so far.
    # ys[i]    output of layer i.
    # hist[i]  what the past tap of layer i >= 1 reads (its input plus the code embeddings) at the
    #          last d_i frames, slot = frame % d_i.
    # pasts[i] past taps of layer i >= 1 for frames f ... f + d_i - 1 (slot = frame % d_i), made
    #          from hist[i] when frame f (a multiple of d_i) starts; zero for the first d_i frames.
    acc = np.empty((L, K, HE), ftype)
    ys = np.zeros((L, K, HE), ftype)
    hist = [None] + [np.zeros((d, K, HE), ftype) for d in dil[1:]]
    pasts = [None] + [np.zeros((d, K, HE), ftype) for d in dil[1:]]
    # torch views of the same memory: torch's matmul honours num_threads, numpy's BLAS does not
    hist_torch = [None] + [torch.from_numpy(q).view(-1, HE) for q in hist[1:]]
    pasts_torch = [None] + [torch.from_numpy(q).view(-1, HE) for q in pasts[1:]]
    scores = np.empty((K, H, C), ftype)  # per frame: out_bias/T + gumbel
    if argmax:
        scores[:] = out_bias

    # Views, made once (indexing costs as much as the tiny ops themselves). At K = 1 the rows are
    # vectors: np.dot of a vector is the cheapest call.
    row = (lambda a: a[0]) if K == 1 else (lambda a: a)
    matmul = np.dot if K == 1 else np.matmul
    heads = []
    for h in range(H):
        sl = slice(h * E, (h + 1) * E)
        steps = [
            (row(acc[i, :, sl]), row(ys[i - 1, :, : (h + 1) * E]), plan.pull[i][h], row(ys[i, :, sl]),
             row(ys[i - 1, :, sl]))
            for i in range(1, L)
        ]
        rest = (acc[0, :, (h + 1) * E :], plan.table0[h]) if h < H - 1 else None
        heads.append((row(acc[0, :, sl]), row(ys[0, :, sl]), steps, row(scores[:, h]), row(ys[L - 1, :, sl]),
                      out_weight[h], row(np.empty((K, C), ftype)), rest))
    codes_hist = [None] * dil[0]  # [K, H] rows of past0 (h*C + code) for the last d_0 frames
    sampled = np.empty((K, H), np.int64)
    for c0 in range(0, T, chunk):
        c1 = min(T, c0 + chunk)
        if on_chunk is not None:
            publish(c0)
            on_chunk(c0, c1, out)
        aud = torch.addmm(plan.audio_bias, audio[:, c0:c1].reshape(-1, audio.shape[2]), plan.audio_weight)
        aud = aud.view(audio.shape[0], c1 - c0, L, HE).permute(1, 2, 0, 3)  # [n, L, Ka, HE]
        aud = aud.to(device="cpu", dtype=plan.dtype).contiguous().numpy()
        noise_chunk = None if argmax else gumbel.frames(c0, c1).to(device="cpu", dtype=plan.dtype).numpy()
        for t in range(c0, c1):
            # Frame start: pre-activations from the past taps and the audio.
            a_t = aud[t - c0]
            for i in range(1, L):
                if t % dil[i] == 0 and t > 0:
                    torch.matmul(hist_torch[i], plan.past[i], out=pasts_torch[i])
            if t < dil[0]:  # layer 0's past tap reads the zero padding
                acc[0] = a_t[0]
            else:
                np.sum(plan.past0[codes_hist[t % dil[0]]], axis=1, out=acc[0])
                acc[0] += a_t[0]
            for i in range(1, L):
                np.add(pasts[i][t % dil[i]], a_t[i], out=acc[i])
            if not argmax:
                np.add(noise_chunk[:, t - c0], out_bias, out=scores)
            # Heads in order; each computes only its own E-wide slice of every layer.
            for h, (a0, y0, steps, score, y_last, w_out, logits, rest) in enumerate(heads):
                np.maximum(a0, 0, out=y0)
                for a, y_in, w, y, y_res in steps:
                    matmul(y_in, w, out=y)
                    y += a
                    np.maximum(y, y_res, out=y)
                matmul(y_last, w_out, out=logits)
                logits += score
                c = logits.argmax(-1)
                sampled[:, h] = c
                if rest is not None:
                    np.add(rest[0], rest[1][c], out=rest[0])
            codes_np[:, t] = sampled
            index = sampled + plan.head_offsets
            codes_hist[t % dil[0]] = index
            x0 = plan.embedding[index].reshape(K, HE)  # this frame's code embeddings
            for i in range(1, L):
                np.add(ys[i - 1], x0, out=hist[i][t % dil[i]])
            if progress is not None and (t + 1) % progress_every == 0 and t + 1 < T:
                progress((t + 1) / T)
    publish(T)
    if on_chunk is not None:
        on_chunk(T, T, out)
    if progress is not None:
        progress(1.0)
    return out
