"""The audio-conditioned autoregressive prior over the categorical codes (stage 2 of MeshTalk).

A PixelCNN-like model over (time x heads). The codes of frame t are H class indices
(one per head, C classes each); the model predicts them in the order frame by frame and,
within a frame, head 0, 1, ..., H-1:

    p(codes | audio) = prod_t prod_h p(code[t, h] | code[<t, :], code[t, <h], audio[<=t])

Architecture (after the released context model: embedding, 4 history layers, logits):

* Embedding: each head has its own table C -> E (E = config.context_embedding, 64), giving
  H*E channels per frame, head-major (channels h*E .. h*E+E-1 belong to head h).
* History layer i (dilation d = config.context_dilations[i], kernel 2 over time):

      z_t = M_i(W_cur) x_t  +  W_past p_{t-d}  +  W_audio a_t + b      (p_{t-d} = 0 before the clip)

  where x is the layer's input (layer 0: the code embeddings x0; later: the previous layer's
  output) and p = x0 in layer 0, p = x + x0 in later layers (see W_past).

  - ``W_cur`` is the current-frame tap of the kernel-2 causal conv, a 1x1 mix over the H*E
    channels with a block mask over heads: output head h reads input heads h' < h in layer 0
    (mask "A", strict) and h' <= h in later layers (mask "B"). This is the standard PixelCNN
    arrangement: layer 0 reads the current frame's *codes*, so head h must not see its own
    code; from layer 1 on, the input at head h only carries codes of heads < h, so it may be
    read. (The released model uses the strict mask in every layer, which makes head h blind
    to the current-frame heads h-1 ... h-L+1 after L layers; with A/B masks head h sees every
    lower head of its frame. The fast sampler in sampler.py handles this head by head.)
  - ``W_past`` is the tap at t - d, a full mix (all heads of past frames are known). In layers
    i >= 1 it reads x_{t-d} + x0_{t-d}: the layer's input plus the code embeddings x0 of that
    frame. Without the x0 term there is a blind spot: the last head's code of a frame can reach
    later frames only through layer 0's past tap (offset 1) and so only odd offsets 1, 3, ..., 15;
    with it every offset 1 ... 15 is reached. (Costs no parameters and one add per frame.)
  - ``W_audio a_t`` projects the current frame's audio code (never a future one).
  - Output: y = relu(z) in layer 0 (no residual: its input is the current codes themselves),
    y = x + relu(z) in later layers (residual).
* Logits: per head, E -> C (block-diagonal, no mixing).

Receptive field: logits at frame t depend on the codes of frames t-15 ... t-1 (all heads) and
on frame t (lower heads only), i.e. ``receptive_field`` = 1 + sum(dilations) = 16 frames, and
on the audio codes of frames t-14 ... t (``audio_receptive_field`` = 1 + sum(dilations[1:]) = 15;
audio enters every layer at the current frame and travels back only through later layers'
past taps, so in teacher forcing it reaches the even offsets 0, 2, ..., 14; the audio code of a
frame already summarises 600 ms of sound, and in sampling earlier audio also acts through the
sampled codes). Nothing depends on future codes or future audio.

Everything runs on the device and dtype of the parameters; no bpy, no hard-coded device.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


def head_mask(heads: int, width: int, strict: bool) -> torch.Tensor:
    """Block mask [H*width (out), H*width (in)]: 1 where output head h may read input head h'.

    strict: h' < h (PixelCNN mask "A"); otherwise h' <= h (mask "B").
    """
    blocks = torch.tril(torch.ones(heads, heads), diagonal=-1 if strict else 0)
    return blocks.repeat_interleave(width, 0).repeat_interleave(width, 1)


class HistoryLayer(nn.Module):
    """One kernel-2 causal dilated conv over time with a head-masked current tap, plus audio."""

    def __init__(self, heads: int, width: int, audio_width: int, dilation: int, strict: bool):
        super().__init__()
        channels = heads * width
        self.dilation = int(dilation)
        self.strict = bool(strict)
        self.current = nn.Linear(channels, channels, bias=False)  # tap at t, masked over heads
        self.past = nn.Linear(channels, channels, bias=False)  # tap at t - dilation, full
        self.audio = nn.Linear(audio_width, channels)  # current frame's audio code; carries the bias
        self.register_buffer("mask", head_mask(heads, width, strict), persistent=False)

    def masked_current_weight(self) -> torch.Tensor:
        return self.current.weight * self.mask

    def forward(self, x: torch.Tensor, audio: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, H*E], audio [B, T, A] -> pre-activation z [B, T, H*E].

        past: what the past tap reads (default x), taken at frame t - dilation.
        """
        d = self.dilation
        past = x if past is None else past
        past = F.pad(past, (0, 0, d, 0))[:, : x.shape[1]]  # frame t-d, zeros before the clip
        return F.linear(x, self.masked_current_weight()) + self.past(past) + self.audio(audio)


class ContextModel(nn.Module):
    """Autoregressive prior p(codes | audio) over T frames x H heads x C classes.

    forward(codes [B, T, H] int64, audio [B or 1, T, A]) -> logits [B, T, H, C], where
    logits[:, t, h] depend only on codes[:, <t] (within the receptive field), codes[:, t, <h]
    and audio[:, <=t].
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.heads = H = int(config.heads)
        self.classes = C = int(config.classes)
        self.width = E = int(config.context_embedding)
        self.audio_width = int(config.audio_width)
        self.dilations = tuple(int(d) for d in config.context_dilations)
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"context_dilations must be positive, got {config.context_dilations}")
        self.embedding = nn.Embedding(H * C, E)  # row h*C + c: head h's embedding of class c
        self.layers = nn.ModuleList(
            HistoryLayer(H, E, self.audio_width, d, strict=(i == 0)) for i, d in enumerate(self.dilations)
        )
        bound = E**-0.5
        self.out_weight = nn.Parameter(torch.empty(H, E, C).uniform_(-bound, bound))  # per-head E -> C
        self.out_bias = nn.Parameter(torch.empty(H, C).uniform_(-bound, bound))
        self.register_buffer("head_offsets", torch.arange(H) * C, persistent=False)

    @property
    def receptive_field(self) -> int:
        """Frames of codes that logits at frame t depend on: t - sum(dilations) ... t."""
        return 1 + sum(self.dilations)

    @property
    def audio_receptive_field(self) -> int:
        """Frames of audio codes that logits at frame t depend on: t - sum(dilations[1:]) ... t."""
        return 1 + sum(self.dilations[1:])

    def _check(self, codes: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or codes.shape[2] != self.heads:
            raise ValueError(f"codes must be [B, T, {self.heads}], got {tuple(codes.shape)}")
        if audio.dim() != 3 or audio.shape[2] != self.audio_width or audio.shape[1] != codes.shape[1]:
            raise ValueError(
                f"audio must be [B, {codes.shape[1]}, {self.audio_width}] to match codes, got {tuple(audio.shape)}"
            )
        if audio.shape[0] != codes.shape[0]:
            if audio.shape[0] != 1:
                raise ValueError(f"audio batch {audio.shape[0]} does not match codes batch {codes.shape[0]}")
            audio = audio.expand(codes.shape[0], -1, -1)
        return audio.to(self.out_weight.dtype)

    def forward(self, codes: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        audio = self._check(codes, audio)
        B, T, H = codes.shape
        x = self.embedding(codes.long() + self.head_offsets).reshape(B, T, H * self.width)
        y = x
        for i, layer in enumerate(self.layers):
            if i == 0:
                y = torch.relu(layer(x, audio))
            else:
                y = y + torch.relu(layer(y, audio, past=y + x))
        y = y.reshape(B, T, H, self.width)
        return torch.einsum("bthe,hec->bthc", y, self.out_weight) + self.out_bias

    def nll(self, codes: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood (nats per code) under teacher forcing."""
        logits = self(codes, audio)
        return F.cross_entropy(logits.reshape(-1, self.classes), codes.reshape(-1).long())
