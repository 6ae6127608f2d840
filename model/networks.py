"""The MeshTalk networks (Richard et al., ICCV 2021): encoders, fusion, Gumbel codes, vertex decoder, losses.

Shapes: B batch, T frames, W mel frames per frame's audio window, M mel bins, V vertices,
H latent heads, C classes per head. Geometry at every interface is absolute vertex positions in
METRES (the template's units); inside, displacements from the template are in millimetres, as the
paper's losses are.

    audio [B,T,W,M] -> AudioEncoder -> [B,T,A] ----------.
    vertices [B,T,V,3] - template -> ExpressionEncoder -> [B,T,E] --> Fusion -> logprobs [B,T,H,C]
    logprobs -> gumbel_softmax_codes -> one-hot codes [B,T,H,C]
    codes + template [B,V,3] -> VertexDecoder -> vertices [B,T,V,3]

`Regressor` is the deterministic baseline: the same audio encoder feeding the same decoder.
No module imports bpy or picks a device: everything follows its inputs' device.
"""

import math
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .audio import band_smoothing, smooth_bands
from .config import ModelConfig

MM_PER_M = 1000.0
LEAK = 0.2  # leaky-ReLU negative slope throughout
AUDIO_KERNEL = 5
# Smallest std used when z-scoring, so inputs that never vary in the data are not blown up.
MIN_FEATURE_STD = 1e-3  # log-mel units
MIN_GEOMETRY_STD_M = 1e-5  # 0.01 mm
DEFAULT_TEMPLATE_STD_M = 0.1  # head-sized: maps a template around the origin to about +-1

ArrayLike = Union[torch.Tensor, np.ndarray, float]


def _fill(buffer: torch.Tensor, value: ArrayLike, minimum: Optional[float] = None) -> None:
    """Copy `value` (broadcastable to `buffer`) into `buffer` in place, optionally clamped from below."""
    value = torch.as_tensor(value, dtype=buffer.dtype, device=buffer.device)
    if minimum is not None:
        value = value.clamp(min=minimum)
    buffer.copy_(value.expand_as(buffer))


def _init_layers(module: nn.Module) -> None:
    """He (Kaiming) init for leaky ReLU on every Linear/Conv1d weight, zero biases.

    PyTorch's default init shrinks activations about sqrt(3)-fold per layer and its random
    biases then dominate: at the fusion output every frame would get nearly the same logits and
    the codes would start collapsed. This init keeps per-frame differences alive through depth.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d)):
            nn.init.kaiming_uniform_(layer.weight, a=LEAK, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)


def _batched_template(template: torch.Tensor, batch: int) -> torch.Tensor:
    """Template [V,3] or [B,V,3] -> [B,V,3]."""
    return template.expand(batch, *template.shape[-2:]) if template.dim() == 2 else template


class AudioEncoder(nn.Module):
    """Log-mel windows [B,T,W,M] -> per-frame audio codes [B,T,A], A = config.audio_width.

    Every frame's window is encoded on its own (the B*T windows form one batch), so the code of
    frame t depends on frame t's window only. Features are band-smoothed when
    config.audio_smoothing_hz is set (`spectra`), then z-scored with buffers set by
    `set_feature_stats`. Then: Conv1d M->A kernel 5 ('valid', W -> W-4) and leaky ReLU; six
    dilated Conv1d A->A kernel 5 (dilations config.audio_dilations), each as a residual average
    x = (x + dropout(leaky_relu(conv(x)))) / 2; the mean over the remaining time; Linear A->A.

    Padding: the released code feeds 1 s windows that its 'valid' convolutions shrink to a single
    step. The paper's 600 ms window (W=60) is shorter than that receptive field (101 mel frames),
    so the dilated layers zero-pad to keep the length ('same'): the residual average needs no
    cropping and every frame of the window contributes to the mean. Zeros are the padding value
    because after a leaky ReLU zero means "no activation"; the raw features are never padded.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        width, mels = config.audio_width, config.n_mels
        if config.audio_window < AUDIO_KERNEL:
            raise ValueError(
                f"audio window of {config.audio_window} mel frames is shorter than the kernel ({AUDIO_KERNEL})"
            )
        smoothing = None if config.audio_smoothing_hz is None else band_smoothing(config.audio_smoothing_hz)
        self.register_buffer("smoothing", smoothing, persistent=False)  # a function of the config
        self.register_buffer("feature_mean", torch.zeros(mels))
        self.register_buffer("feature_std", torch.ones(mels))
        self.convert = nn.Conv1d(mels, width, AUDIO_KERNEL)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, AUDIO_KERNEL, dilation=d, padding=d * (AUDIO_KERNEL - 1) // 2)
            for d in config.audio_dilations
        )
        self.dropout = nn.Dropout(config.dropout)
        self.code = nn.Linear(width, width)
        _init_layers(self)

    @torch.no_grad()
    def set_feature_stats(self, mean: ArrayLike, std: ArrayLike) -> None:
        """Per-bin log-mel mean and std [M] (or scalars) of the training features."""
        _fill(self.feature_mean, mean)
        _fill(self.feature_std, std, MIN_FEATURE_STD)

    def spectra(self, windows: torch.Tensor) -> torch.Tensor:
        """Log-mel windows [..., M] as the encoder reads them: band-smoothed when
        config.audio_smoothing_hz is set, else as they are. Feature statistics describe these."""
        return windows if self.smoothing is None else smooth_bands(windows, self.smoothing)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        B, T, W, M = windows.shape
        x = (self.spectra(windows) - self.feature_mean) / self.feature_std
        # [B*T, M, 1, W] in channels-last layout, a free view of the [B*T, W, M] windows: the
        # Conv1d layers run as 1 x k Conv2d on it, which oneDNN computes about 1.5x faster on CPU
        # than Conv1d's channels-first layout (same weights, same result up to rounding).
        x = x.reshape(B * T, W, M).permute(0, 2, 1)[:, :, None, :]
        x = F.leaky_relu(_conv_1xk(self.convert, x), LEAK)
        for conv in self.convs:
            x = (x + self.dropout(F.leaky_relu(_conv_1xk(conv, x), LEAK))) / 2
        return self.code(x.mean(dim=(-2, -1))).reshape(B, T, -1)


def _conv_1xk(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv` applied along the last axis of x [N, C, 1, L]: a Conv2d with a 1 x k kernel."""
    return F.conv2d(x, conv.weight[:, :, None, :], conv.bias, padding=(0, conv.padding[0]),
                    dilation=(1, conv.dilation[0]))


class ExpressionEncoder(nn.Module):
    """Vertices [B,T,V,3] and template [B,V,3] (or [V,3]), metres -> expression codes [B,T,E].

    E = config.expression_width. The displacement from the template, in mm, is z-scored with a
    buffer set by `set_vertex_stats`, flattened to 3V, then Linear 3V->2E, Linear 2E->E (leaky
    ReLU after each), a one-layer LSTM of width E over time, Linear E->E. Causal in time: the code
    of frame t depends on frames <= t only.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        V, width = config.num_vertices, config.expression_width
        self.register_buffer("displacement_std_mm", torch.ones(V, 3))
        self.mlp = nn.Sequential(
            nn.Linear(3 * V, 2 * width), nn.LeakyReLU(LEAK), nn.Linear(2 * width, width), nn.LeakyReLU(LEAK)
        )
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.code = nn.Linear(width, width)
        _init_layers(self)

    @torch.no_grad()
    def set_vertex_stats(self, std: ArrayLike) -> None:
        """Std of the training displacements (vertices - template) in METRES: [V,3], [V,1] or a scalar."""
        std_mm = torch.as_tensor(std, dtype=torch.float32) * MM_PER_M
        _fill(self.displacement_std_mm, std_mm, MIN_GEOMETRY_STD_M * MM_PER_M)

    def forward(self, vertices: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        B, T = vertices.shape[:2]
        displacement = (vertices - _batched_template(template, B)[:, None]) * MM_PER_M
        x = (displacement / self.displacement_std_mm).reshape(B, T, -1)
        x, _ = self.lstm(self.mlp(x))
        return self.code(x)


class Fusion(nn.Module):
    """Expression codes [B,T,E] and audio codes [B,T,A] -> log-probabilities [B,T,H,C].

    MLP on the concatenation [expression, audio]: (E+A) -> F -> F -> H*C, leaky ReLU between,
    F = config.fusion_width; log-softmax over the C classes of each head.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads, self.classes = config.heads, config.classes
        width = config.fusion_width
        self.mlp = nn.Sequential(
            nn.Linear(config.expression_width + config.audio_width, width),
            nn.LeakyReLU(LEAK),
            nn.Linear(width, width),
            nn.LeakyReLU(LEAK),
            nn.Linear(width, self.heads * self.classes),
        )
        _init_layers(self)

    def forward(self, expression: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(torch.cat([expression, audio], dim=-1))
        return F.log_softmax(logits.unflatten(-1, (self.heads, self.classes)), dim=-1)


def gumbel_softmax_codes(
    logprobs: torch.Tensor, tau: float = 1.0, hard: bool = True, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Sample codes [..., C] from log-probabilities [..., C] (e.g. [B,T,H,C]) with Gumbel-softmax.

    soft = softmax((logprobs + Gumbel noise) / tau). With hard=True (straight-through) the forward
    value is exactly the one-hot of soft's argmax and the backward pass uses soft's gradient. The
    noise comes from `generator` when given (it must live on logprobs' device), so a seeded
    generator makes the codes reproducible.
    """
    uniform = torch.rand(logprobs.shape, generator=generator, device=logprobs.device, dtype=logprobs.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp(min=torch.finfo(uniform.dtype).tiny)))
    soft = F.softmax((logprobs + gumbel) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return one_hot + (soft - soft.detach())  # exactly one-hot forward, soft gradient backward


def argmax_codes(logprobs: torch.Tensor) -> torch.Tensor:
    """The most likely class of each head as one-hot codes: [..., C] -> float [..., C] (no gradient)."""
    return F.one_hot(logprobs.argmax(dim=-1), logprobs.shape[-1]).to(logprobs.dtype)


class VertexDecoder(nn.Module):
    """Per-frame conditioning [B,T,D] and template [B,V,3] (or [V,3]) -> vertices [B,T,V,3], metres.

    UNet-style on the template, widths config.decoder_widths (default 512, 256, 128):
    - template encoder: the template, z-scored with buffers set by `set_template_stats`, flattened
      3V -> 512 -> 256 -> 128 (leaky ReLU); each level's activation is kept as a skip;
    - fuse: Linear(D + 128 -> 128) on [conditioning, template code], leaky ReLU;
    - a config.decoder_lstm_layers-layer LSTM of width 128 over time (causal);
    - decoder: + skip 128, then 128 -> 256 -> 512 (leaky ReLU, each level + the template skip of
      its width, broadcast over T), then a Linear to 3V: the displacement in mm.
    Output = template + displacement / 1000. The last layer starts at zero, so an untrained
    decoder returns the template exactly.

    D is `condition_width`: H*C for MeshTalk's one-hot codes, the audio width for the Regressor.
    """

    def __init__(self, config: ModelConfig, condition_width: int):
        super().__init__()
        V, widths = config.num_vertices, tuple(config.decoder_widths)
        inner = widths[-1]
        self.register_buffer("template_mean", torch.zeros(V, 3))
        self.register_buffer("template_std", torch.full((V, 3), DEFAULT_TEMPLATE_STD_M))
        sizes = (3 * V,) + widths  # 3V, 512, 256, 128
        self.template_encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fuse = nn.Linear(condition_width + inner, inner)
        self.lstm = nn.LSTM(inner, inner, num_layers=config.decoder_lstm_layers, batch_first=True)
        up = widths[::-1]  # 128, 256, 512
        self.up = nn.ModuleList(nn.Linear(a, b) for a, b in zip(up[:-1], up[1:]))
        self.out = nn.Linear(widths[0], 3 * V)
        _init_layers(self)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @torch.no_grad()
    def set_template_stats(self, mean: ArrayLike, std: ArrayLike) -> None:
        """Mean [V,3] and std ([V,3] or scalar) of the training templates, in METRES."""
        _fill(self.template_mean, mean)
        _fill(self.template_std, std, MIN_GEOMETRY_STD_M)

    def forward(self, condition: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        return self.stream(condition, template)[0]

    def stream(
        self, condition: torch.Tensor, template: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """`forward` that starts from the LSTM `state` of a previous call and returns the new one:
        decoding a long clip in time chunks, each from the last one's state, equals decoding it
        whole, while memory stays bounded by the chunk."""
        B, T = condition.shape[:2]
        template = _batched_template(template, B)
        x = ((template - self.template_mean) / self.template_std).reshape(B, -1)
        skips = []
        for layer in self.template_encoder:
            x = F.leaky_relu(layer(x), LEAK)
            skips.append(x[:, None])  # [B, 1, width]: broadcasts over T
        skips.reverse()  # inner (128) first

        x = torch.cat([condition, skips[0].expand(B, T, -1)], dim=-1)
        x, state = self.lstm(F.leaky_relu(self.fuse(x), LEAK), state)
        x = x + skips[0]
        for layer, skip in zip(self.up, skips[1:]):
            x = F.leaky_relu(layer(x), LEAK) + skip
        displacement_mm = self.out(x).unflatten(-1, template.shape[-2:])
        return template[:, None] + displacement_mm / MM_PER_M, state


class MeshTalk(nn.Module):
    """The full model: audio and expression encoders, fusion, categorical codes, vertex decoder.

    Template arguments are [B,V,3] or [V,3] (shared by the batch), in metres.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config)
        self.expression_encoder = ExpressionEncoder(config)
        self.fusion = Fusion(config)
        self.decoder = VertexDecoder(config, condition_width=config.heads * config.classes)

    def audio_codes(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel windows [B,T,W,M] -> audio codes [B,T,A] (the context model's conditioning)."""
        return self.audio_encoder(audio)

    def encode(self, audio: torch.Tensor, vertices: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """Audio [B,T,W,M], vertices [B,T,V,3] and their template -> log-probabilities [B,T,H,C]."""
        return self.fusion(self.expression_encoder(vertices, template), self.audio_encoder(audio))

    def decode(self, codes: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """Codes -> vertices [B,T,V,3] metres on `template`.

        codes: one-hot (or soft) float [B,T,H,C], or class indices, integer [B,T,H].
        """
        if not codes.is_floating_point():
            codes = F.one_hot(codes, self.config.classes).float()
        return self.decoder(codes.flatten(-2), template)

    @torch.no_grad()
    def decode_into(
        self,
        codes: torch.Tensor,
        template: torch.Tensor,
        out: np.ndarray,
        start: int = 0,
        stop: Optional[int] = None,
        state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        chunk_frames: int = 512,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode frames start ... stop - 1 of integer codes [K,T,H] (K variants) on template [V,3]
        into `out`, a float32 array [K,T,V,3] (metres), `chunk_frames` at a time: peak memory is
        one chunk's. `state` is the decoder LSTM's state after frame start - 1 (None at frame 0);
        returns the state after frame stop - 1, so consecutive spans equal one `decode`."""
        stop = codes.shape[1] if stop is None else stop
        for first in range(start, stop, chunk_frames):
            last = min(stop, first + chunk_frames)
            condition = F.one_hot(codes[:, first:last], self.config.classes).float()
            vertices, state = self.decoder.stream(condition.flatten(-2), template, state)
            out[:, first:last] = vertices.cpu().numpy()
        return state

    def forward(
        self,
        audio: torch.Tensor,
        vertices: torch.Tensor,
        template: torch.Tensor,
        tau: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct: returns (vertices [B,T,V,3] metres, one-hot codes [B,T,H,C], logprobs [B,T,H,C])."""
        logprobs = self.encode(audio, vertices, template)
        codes = gumbel_softmax_codes(logprobs, tau=tau, generator=generator)
        return self.decode(codes, template), codes, logprobs


class Regressor(nn.Module):
    """Deterministic baseline: audio [B,T,W,M] and template -> vertices [B,T,V,3] metres.

    The same AudioEncoder feeds the same VertexDecoder directly (conditioning width A, no latent).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config)
        self.decoder = VertexDecoder(config, condition_width=config.audio_width)

    def forward(self, audio: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.audio_encoder(audio), template)


# ---------------------------------------------------------------- losses (all in mm^2)


def region_loss(pred: torch.Tensor, target: torch.Tensor, weights: ArrayLike) -> torch.Tensor:
    """Weighted MSE in mm^2 between vertices [..., V, 3] (metres), vertex weights [V] >= 0.

    sum(w_v * |pred_v - target_v|^2) / (3 * sum(w) * frames), summed over every frame and
    vertex: the mean squared coordinate error over the weighted region, so all-ones weights give
    `reconstruction_loss`.
    """
    weights = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    squared = (((pred - target) * MM_PER_M) ** 2).sum(dim=-1)  # [..., V]
    frames = squared.numel() // squared.shape[-1]
    return (squared * weights).sum() / (3 * frames * weights.sum().clamp(min=1e-12))


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE in mm^2 over all coordinates of vertices [..., V, 3] given in metres."""
    return F.mse_loss(pred * MM_PER_M, target * MM_PER_M)


def eyelid_loss(pred: torch.Tensor, target: torch.Tensor, eyelid_mask: ArrayLike) -> torch.Tensor:
    """MSE in mm^2 over the eyelid vertices (bool mask [V]) of vertices [..., V, 3] in metres."""
    return region_loss(pred, target, torch.as_tensor(eyelid_mask).bool())


def lip_gap_loss(pred: torch.Tensor, target: torch.Tensor, upper: ArrayLike, lower: ArrayLike) -> torch.Tensor:
    """MSE in mm^2 between the inner-lip gap vectors (vertex upper[i] minus vertex lower[i], index
    pairs [P]) of predicted and true vertices [..., V, 3] in metres: whether the lips part and
    seal as they should, which a mean over thousands of vertices dilutes."""
    upper, lower = torch.as_tensor(upper, device=pred.device).long(), torch.as_tensor(lower, device=pred.device).long()

    def gaps(vertices):
        return (vertices[..., upper, :] - vertices[..., lower, :]) * MM_PER_M

    return F.mse_loss(gaps(pred), gaps(target))


def cross_modality_loss(
    model: MeshTalk,
    audio_codes: torch.Tensor,
    expression_codes: torch.Tensor,
    vertices: torch.Tensor,
    template: torch.Tensor,
    mouth_weights: ArrayLike,
    upper_weights: ArrayLike,
    lip_pairs: Tuple[ArrayLike, ArrayLike],
    generator: Optional[torch.Generator] = None,
    reconstruction: Optional[torch.Tensor] = None,
) -> dict:
    """The paper's cross-modality loss (mm^2) from the encoders' outputs for a batch: audio codes
    [B,T,A], expression codes [B,T,E] (of vertices [B,T,V,3] on template [B,V,3]).

    Sample i is paired with sample j = (i + 1) mod B, a derangement (B >= 2):
    - audio of i, expression of j: decoded on i's template, the mouth (mouth_weights [V]) must
      match i's vertices: the audio drives the mouth;
    - audio of j, expression of i: decoded on i's template, the upper face (upper_weights [V])
      must match i's vertices: the expression drives the upper face.
    Returns {"cross_modality": the sum of the two region losses, "audio_lip_gap": `lip_gap_loss`
    (inner-lip index pairs `lip_pairs`) of the audio-driven mouth}. The second is not in the
    paper: the mouth region's mean barely sees whether the lips seal, so without it the audio
    path left p/b/m closure to the expression (20 % of p/b/m sealed with another utterance's
    expression, 98 % with the true one). Given `reconstruction` [B,T,V,3] (the decode of each
    sample's own audio and expression), also "mouth_consistency": `region_loss` between its mouth
    and the audio-driven one, which share the audio and differ only in the expression (not in the
    paper either: the cross-modality term alone left the decoded mouth 0.25 mm apart, std over
    four expressions of another utterance, where the data's own non-audio motion moves it 0.06
    mm, so the sampled variants differed as much in the mouth as in the upper face). The encoders
    run once per batch (their outputs are only permuted), so the loss costs two fusion+decoder passes.
    """
    B = vertices.shape[0]
    if B < 2:
        raise ValueError(f"cross_modality_loss swaps modalities across the batch and needs B >= 2, got B={B}")
    template = _batched_template(template, B)
    other = torch.roll(torch.arange(B, device=vertices.device), -1)  # other[i] = (i + 1) % B

    def reconstruct(expression, audio):
        codes = gumbel_softmax_codes(model.fusion(expression, audio), generator=generator)
        return model.decode(codes, template)

    mouth = reconstruct(expression_codes[other], audio_codes)
    upper = reconstruct(expression_codes, audio_codes[other])
    cross = region_loss(mouth, vertices, mouth_weights) + region_loss(upper, vertices, upper_weights)
    losses = {"cross_modality": cross, "audio_lip_gap": lip_gap_loss(mouth, vertices, *lip_pairs)}
    if reconstruction is not None:
        losses["mouth_consistency"] = region_loss(mouth, reconstruction, mouth_weights)
    return losses


def code_usage_loss(logprobs: torch.Tensor, floor: float = 0.5) -> torch.Tensor:
    """Penalty on heads whose classes collapse, from log-probabilities [..., H, C].

    A head's usage is 1 - H(p_mean) / log C, where p_mean [C] is its class distribution averaged
    over every frame of the batch: 0 when the batch spreads evenly over all C classes, 1 when one
    class takes everything. The loss is the mean over heads of max(0, usage - floor): free while a
    head uses more than about C^(1 - floor) classes (11 of 128 at 0.5), so the codes can still
    specialise, and growing as it collapses. Without it the codes fell onto 2-4 classes per head,
    the latent carried little beyond the audio and the prior had nothing left to sample. A penalty
    that holds the usage at 0 stalled training instead: every code stayed uniform noise.
    """
    mean = logprobs.exp().flatten(0, -3).mean(0)  # [H, C]
    entropy = -(mean * mean.clamp(min=1e-12).log()).sum(-1)
    usage = 1 - entropy / math.log(logprobs.shape[-1])
    return F.relu(usage - floor).mean()


def stage1_losses(
    model: MeshTalk,
    audio: torch.Tensor,
    vertices: torch.Tensor,
    template: torch.Tensor,
    mouth_weights: ArrayLike,
    upper_weights: ArrayLike,
    eyelid_mask: ArrayLike,
    lip_pairs: Tuple[ArrayLike, ArrayLike],
    generator: Optional[torch.Generator] = None,
) -> dict:
    """Stage-1 losses in mm^2 for audio [B,T,W,M], vertices [B,T,V,3], template [B,V,3]:
    {"reconstruction", "eyelid", "cross_modality"}, which the paper weights 1 each, plus
    "lip_gap" (`lip_gap_loss` on the inner-lip index pairs `lip_pairs`, mm^2), "audio_lip_gap"
    (the same on the audio-driven mouth), "mouth_consistency" (see `cross_modality_loss`) and
    "code_usage" (`code_usage_loss`, dimensionless), which the paper does not have. The trainer sets the
    weights (model/train.py, TrainConfig)."""
    audio_codes = model.audio_codes(audio)
    expression_codes = model.expression_encoder(vertices, template)
    logprobs = model.fusion(expression_codes, audio_codes)
    codes = gumbel_softmax_codes(logprobs, generator=generator)
    reconstruction = model.decode(codes, template)
    return {
        "reconstruction": reconstruction_loss(reconstruction, vertices),
        "eyelid": eyelid_loss(reconstruction, vertices, eyelid_mask),
        "lip_gap": lip_gap_loss(reconstruction, vertices, *lip_pairs),
        **cross_modality_loss(model, audio_codes, expression_codes, vertices, template, mouth_weights,
                              upper_weights, lip_pairs, generator, reconstruction),
        "code_usage": code_usage_loss(logprobs),
    }


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers excluded) in `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
