"""One dataclass configures every network; checkpoints store it as a plain dict."""

from dataclasses import asdict, dataclass

from .audio import DEFAULT_FUTURE_S, DEFAULT_PAST_S, N_MELS, window_size


@dataclass(frozen=True)
class ModelConfig:
    num_vertices: int = 2659  # V of the template topology
    heads: int = 16  # H: categorical latent heads (paper 64, released weights 16)
    classes: int = 128  # C: classes per head
    fps: float = 30.0  # model frame rate
    past_s: float = DEFAULT_PAST_S  # audio context before each frame
    future_s: float = DEFAULT_FUTURE_S  # audio context after each frame
    n_mels: int = N_MELS
    # Average each log-mel band's power over this many Hz around it (`model.audio.band_smoothing`):
    # the spectral envelope without the comb of pitch harmonics. None: the log-mel as it is (the paper).
    audio_smoothing_hz: float | None = None
    audio_width: int = 128  # audio encoder channels and code size
    audio_dilations: tuple[int, ...] = (2, 4, 6, 2, 4, 6)
    expression_width: int = 128  # expression encoder LSTM width and code size
    fusion_width: int = 256
    decoder_widths: tuple[int, ...] = (512, 256, 128)  # template encoder / vertex decoder, outer to inner
    decoder_lstm_layers: int = 2
    context_embedding: int = 32  # context model: per-head class embedding (released: 64; 32 samples 2.7x faster on CPU)
    context_dilations: tuple[int, ...] = (1, 2, 4, 8)  # causal time convolutions, kernel 2
    dropout: float = 0.2

    @property
    def audio_window(self) -> int:
        """Mel frames in each frame's audio window (60 for 500 ms past + 100 ms future)."""
        return window_size(self.past_s, self.future_s)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
        return cls(**{**values, **tuples})
