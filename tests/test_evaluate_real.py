"""Real-speech scoring end to end on a small random-weight checkpoint and a fabricated clip folder."""

import json

import numpy as np
import torch

from model.audio import write_wav
from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.context import ContextModel
from model.evaluate import evaluate_real
from model.networks import MeshTalk
from model.template import load_template

SMALL = dict(heads=4, classes=8, audio_width=16, expression_width=16, fusion_width=32,
             decoder_widths=(32, 16, 8), context_embedding=8)


MAP = {"t": "map", "w": [{"b": 0.5, "d": 0.1, "t": "M"}, {"b": 0.6, "d": 0.2, "t": "AE"},
                         {"b": 0.8, "d": 0.1, "t": "P"}]}


def write_clip_folder(folder, words):
    """A folder in python -m model.data.real_speech's format: one 2 s clip, a 180 Hz tone gated at
    3 Hz, with the PocketSphinx-style alignment `words`."""
    folder.mkdir()
    t = np.arange(32000) / 16000
    write_wav(folder / "a.wav", 0.3 * (np.sin(2 * np.pi * 3 * t) > 0) * np.sin(2 * np.pi * 180 * t))
    (folder / "a.phone.json").write_text(json.dumps({"b": 0.0, "d": 2.0, "t": "map", "w": words}))
    return folder


def _small_checkpoint_and_clip(tmp_path, words):
    torch.manual_seed(0)
    config = ModelConfig(num_vertices=load_template().num_vertices, **SMALL)
    checkpoint = tmp_path / "small.pt"
    save_checkpoint(checkpoint, config, MeshTalk(config), ContextModel(config), {"model_version": "test"})
    return checkpoint, write_clip_folder(tmp_path / "clips", words)


def test_evaluate_real_writes_scores_table_and_plot(tmp_path):
    words = [{"t": "<sil>", "w": [{"b": 0.0, "d": 0.5, "t": "SIL"}]}, MAP,
             {"t": "a", "w": [{"b": 0.9, "d": 0.3, "t": "AH"}]}, {"t": "<sil>", "w": [{"b": 1.2, "d": 1.1, "t": "SIL"}]}]
    checkpoint, clips = _small_checkpoint_and_clip(tmp_path, words)

    summary = evaluate_real(clips, tmp_path / "no-run", checkpoint, tmp_path / "out", seeds=3)
    # The untrained decoder outputs the closed template: lips closed everywhere, never open.
    # Events are the clips' own, however many draws are pooled; closed_elsewhere counts the
    # frames of "a" more than 100 ms after the /p/ (1.0-1.2 s: 5 frames).
    assert summary["events"] == {"closure": 2, "opening": 1, "rest": 2, "closed_elsewhere": 5}
    assert summary["seeds"] == 3
    # A mouth that never moves has no correlation with the envelope: n/a, not a number.
    # The closure interval is over the 2 events, not the 6 draws of them (Wilson: 34.2-100 %).
    assert summary["methods"] == {"MeshTalk (variant 0)": {"closure_pct": 100.0, "closure_ci95_pct": [34.2, 100.0],
                                                           "opening_pct": 0.0, "rest_pct": 100.0,
                                                           "closed_elsewhere_pct": 100.0, "envelope_r": None,
                                                           "envelope_lag_ms": None}}
    table = (tmp_path / "out" / "real_speech.md").read_text()
    assert "| MeshTalk (variant 0) | 100.0 | 34.2-100.0 | 0.0 | 100.0 | 100.0 | n/a | n/a |" in table
    assert "5 closed_elsewhere frames" in table
    assert f"clips in {clips}," in table  # names the folder scored, whichever clips it holds
    assert "pooled over 3 seeds" in table
    assert (tmp_path / "out" / "real_lip_gap.png").stat().st_size > 0


def test_evaluate_real_scores_a_kind_without_events_as_not_applicable(tmp_path):
    checkpoint, clips = _small_checkpoint_and_clip(tmp_path, [MAP])

    summary = evaluate_real(clips, tmp_path / "no-run", checkpoint, tmp_path / "out")
    assert summary["events"] == {"closure": 2, "opening": 1, "rest": 0, "closed_elsewhere": 0}
    assert summary["methods"]["MeshTalk (variant 0)"]["rest_pct"] is None
    table = (tmp_path / "out" / "real_speech.md").read_text()
    assert "| MeshTalk (variant 0) | 100.0 | 34.2-100.0 | 0.0 | n/a | n/a | n/a | n/a |" in table
