"""Score MeshTalk against the static template and the deterministic regressor on a held-out split.

    python -m model.evaluate --corpus data/corpus --split test --run runs/default --out out/eval \
        [--real data/real_speech [--real-seeds 4]] [--festival kal,ked,slt]

Writes `OUT/metrics.md` (markdown tables), `OUT/metrics.json` (every score, with real speech's
and Festival's under "real_speech" and "festival" when asked for) and `OUT/lip_gap.png` (the
inner-lip gap over time of one utterance: ground truth and each method). Metrics: model/metrics.py.
Every method animates the speaker's own neutral head, as the ground truth does; the "ground truth"
row scores the data itself, the reference for the lip-sync rates and blinks. With more than
one variant, their spread is measured as sampled, as `animate` returns them (lips shared), and for
the data itself (the utterance regenerated with fresh draws of its motion that does not follow the
speech: model/data/synth.py, `redraw_free_motion`). The "phone oracle" row is no model: it is
the corpus generator's own lower face from the utterance's true phones and loudness, in the
default articulation style rather than the (unseen) speaker's, with a still upper face: how well
lips can score from everything the audio carries (`lower_face_in_style`); "phone oracle, N ms
ahead" knows at each frame only the phones begun within the model's future audio window (N ms). With `--real`
(clips from `python -m model.data.real_speech`), real human speech is scored too: it has no
ground-truth meshes, so only lip closure, opening, rest and lips closed away from any p/b/m
against its forced phone alignment,
and how the mouth's opening follows the speech envelope (scored on the split too, for every
method and the ground truth: the correlation at the best lag within 200 ms, and that lag),
written to `OUT/real_speech.md` and `OUT/real_lip_gap.png`. With `--festival kal,slt`, the split's
sentences spoken by the Festival speech system's voices (model/data/festival.py) are scored on
lip sync against Festival's phone timing, written to `OUT/festival.md`.
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .animate import animate, cached_checkpoint, decode
from .audio import SAMPLE_RATE, frame_windows, log_mel, normalize_loudness
from .checkpoint import DEFAULT_CHECKPOINT, trained_weights
from .config import ModelConfig
from .data.corpus import load_corpus
from .data.coarticulation import ArticulationStyle
from .data.synth import lower_face_in_style, redraw_free_motion
from .data import festival
from .data.real_speech import load_real_speech
from .networks import Regressor
from .template import load_template


def _regressor(run: Path):
    path = run / "regressor.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = Regressor(ModelConfig.from_dict(json.loads(state["model_config"])))
    net.load_state_dict(trained_weights(state))
    return net.eval()


@torch.no_grad()
def _regress(net: Regressor, audio: np.ndarray, frames: int, head: np.ndarray) -> np.ndarray:
    config = net.config
    windows = frame_windows(log_mel(torch.from_numpy(normalize_loudness(audio))), frames, config.fps,
                            config.past_s, config.future_s)
    return net(windows[None], torch.as_tensor(head))[0].numpy()


GROUND_TRUTH = "ground truth"
# The split's speakers' heads all lie 1.5 mm RMS from the template (model/data/identity.py); users
# animate the template itself, where a model can fail while it works on every speaker's head.
ON_TEMPLATE = "MeshTalk (variant 0) on the template head"
_INTERVAL_NOTE = ("closure_ci95_pct is the closure rate's 95 % interval over the events; closed_elsewhere_pct is "
                  "the share of speech frames away from any p/b/m with closed lips (lower is better).")


def _event_counts(events: dict[str, int]) -> str:
    """"29 closure, 20 opening, 0 rest, 408 closed_elsewhere frames": closed_elsewhere counts frames."""
    return ", ".join(f"{t} {k}" + (" frames" if k == "closed_elsewhere" else "") for k, t in events.items())


def _with_closure_interval(counts: dict[str, tuple[int, int]], events: int) -> dict[str, float | list | None]:
    """metrics.sync_percentages plus closure_ci95_pct: [low, high] %, the Wilson interval of the closure rate
    over the `events` p/b/m events it pools (draws of the same events count once); None for none."""
    hits, total = counts["closure"]
    interval = [round(100 * x, 1) for x in metrics.wilson_interval(hits / total, events)] if events else None
    scores = metrics.sync_percentages(counts)
    return {"closure_pct": scores.pop("closure_pct"), "closure_ci95_pct": interval, **scores}


def _cell(value) -> str:
    """A markdown table cell: n/a for a score that does not apply (None), low-high for an interval."""
    if isinstance(value, list):
        return "-".join(map(str, value))
    return "n/a" if value is None else str(value)


def _regenerated(weights: np.ndarray, corpus, u: int) -> np.ndarray:
    """ARKit weights [..., T, 52] regenerated for utterance u, checked to have its frame count."""
    if weights.shape[-2] != corpus.num_frames(u):
        raise SystemExit(f"utterance {u} regenerates to {weights.shape[-2]} frames, the corpus has "
                         f"{corpus.num_frames(u)}: remake the corpus with this version of python -m model.data.synth")
    return weights


def evaluate(corpus_dir: Path, split: str, run: Path, checkpoint: Path, variants: int, limit: int | None,
             out: Path) -> dict:
    template = load_template()
    corpus = load_corpus(corpus_dir / f"{split}.npz", template)
    lips, upper = metrics.lip_vertices(template), template.upper_face_weights > 0.5
    regressor = _regressor(run)
    lookahead_s = cached_checkpoint(str(checkpoint), "cpu")[0].future_s  # animate below reuses it
    ahead = f"phone oracle, {round(lookahead_s * 1000)} ms ahead"
    methods = ([GROUND_TRUTH, "static template", "phone oracle", ahead] + (["regressor"] if regressor else [])
               + ["MeshTalk (variant 0)", ON_TEMPLATE])
    rows = {m: {"lve": [], "mve": [], "fdd": [], "blinks": 0, "sync": {}, "openings": []} for m in methods}
    gt_blinks, seconds, diversity, example = 0, 0.0, [], None
    gt_openings, envelopes = [], []
    for u in range(len(corpus) if limit is None else min(limit, len(corpus))):
        head = corpus.utterance_template(u)
        truth = corpus.vertices(u)
        audio = corpus.utterance_audio(u)
        speaker = replace(template, vertices=head)
        anim = animate(audio, variants=variants, seed=u, checkpoint=checkpoint, template=speaker, device="cpu")
        n = min(len(truth), anim.vertices.shape[1])
        oracle, oracle_ahead = (_regenerated(lower_face_in_style(corpus.seed, split, u, ArticulationStyle(), ahead_s),
                                             corpus, u) for ahead_s in (None, lookahead_s))
        predictions = {"static template": np.repeat(head[None], n, axis=0), "phone oracle": speaker.blend(oracle)[:n],
                       ahead: speaker.blend(oracle_ahead)[:n], "MeshTalk (variant 0)": anim.vertices[0, :n]}
        if regressor:
            predictions["regressor"] = _regress(regressor, audio, len(truth), head)[:n]
        # variant 0's codes decoded on the template, its motion scored on the speaker's head
        on_template = decode(anim.codes[:1], device="cpu", checkpoint=checkpoint, template=template)[0, :n]
        predictions[ON_TEMPLATE] = on_template - template.vertices + head
        truth = truth[:n]
        predictions = {GROUND_TRUTH: truth, **predictions}  # the data scored as a method: the metrics' reference
        truth_dynamics = metrics.upper_face_dynamics(truth, head, upper)
        for name, pred in predictions.items():
            row = rows[name]
            row["lve"].append(metrics.lip_vertex_error(pred, truth, lips))
            row["mve"].append(metrics.mean_vertex_error(pred, truth))
            row["fdd"].append(truth_dynamics - metrics.upper_face_dynamics(pred, head, upper))
            row["blinks"] += metrics.blinks(pred, speaker)
            row["openings"].append(metrics.lip_gap_mm(pred, speaker))
            metrics.add_sync_scores(row["sync"], metrics.lip_sync_scores(pred, corpus.fps, corpus.phones(u), speaker))
        gt_blinks += metrics.blinks(truth, speaker)
        gt_openings.append(metrics.lip_gap_mm(truth, speaker))
        envelopes.append(metrics.speech_envelope(audio, SAMPLE_RATE, corpus.fps, n))
        seconds += n / corpus.fps
        if variants > 1:
            sampled = decode(anim.codes, device="cpu", checkpoint=checkpoint, template=speaker, own_lips=True)
            data = speaker.blend(_regenerated(redraw_free_motion(corpus.seed, split, u, variants), corpus, u))
            diversity.append({f"{kind}_{k}": v for kind, vertices in (("sampled", sampled),
                                                                       ("shared_lips", anim.vertices), ("data", data))
                              for k, v in metrics.variant_diversity(vertices[:, :n], speaker).items()})
        if example is None:
            example = (u, truth, predictions, speaker)
    summary = {"split": split, "utterances": len(rows[methods[0]]["lve"]), "seconds": round(seconds, 1),
               "ground_truth_blinks_per_min": round(gt_blinks / seconds * 60, 2),
               "ground_truth_envelope": metrics.envelope_correlation(gt_openings, envelopes, corpus.fps),
               "methods": {}}
    for name, row in rows.items():
        lve = float(np.mean(row["lve"]))
        envelope = metrics.envelope_correlation(row["openings"], envelopes, corpus.fps)
        summary["methods"][name] = {
            "sqrt_lve_mm": round(float(np.sqrt(lve)), 3), "lve_mm2": round(lve, 3),
            "mve_mm": round(float(np.mean(row["mve"])), 3), "fdd_mm2": round(float(np.mean(row["fdd"])), 4),
            "blinks_per_min": round(row["blinks"] / seconds * 60, 2),
            **metrics.sync_percentages(row["sync"]),
            "envelope_r": envelope["r"], "envelope_lag_ms": envelope["lag_ms"],
        }
    if diversity:
        summary["diversity_mm"] = {k: round(float(np.mean([d[k] for d in diversity])), 4) for k in diversity[0]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text(markdown_table(summary))
    _plot_lip_gap(out / "lip_gap.png", example, corpus.fps)
    return summary


def evaluate_real(folder: Path, run: Path, checkpoint: Path, out: Path, seeds: int = 4) -> dict:
    """Lip-sync scores on real speech (no meshes): {method: {closure_pct, closure_ci95_pct, opening_pct,
    rest_pct, closed_elsewhere_pct, envelope_r, envelope_lag_ms}}. MeshTalk's variant 0 is drawn with
    `seeds` seeds per clip (clip index + 1000 * s) and its scores pool them: the clips hold few
    events."""
    template = load_template()
    regressor = _regressor(run)
    sync: dict[str, dict[str, tuple[int, int]]] = {}
    openings: dict[str, list[np.ndarray]] = {}
    envelopes: dict[str, list[np.ndarray]] = {}
    clips, example = load_real_speech(folder), None
    for index, (name, audio, phones) in enumerate(clips):
        draws = [animate(audio, seed=index + 1000 * s, checkpoint=checkpoint, template=template, device="cpu")
                 for s in range(seeds)]
        fps, frames = draws[0].fps, draws[0].vertices.shape[1]
        predictions = {"MeshTalk (variant 0)": [anim.vertices[0] for anim in draws]}
        if regressor:
            predictions["regressor"] = [_regress(regressor, audio, frames, template.vertices)]
        envelope = metrics.speech_envelope(audio, SAMPLE_RATE, fps, frames)
        for method, preds in predictions.items():
            for pred in preds:
                metrics.add_sync_scores(sync.setdefault(method, {}),
                                        metrics.lip_sync_scores(pred, fps, phones, template))
                openings.setdefault(method, []).append(metrics.lip_gap_mm(pred, template))
                envelopes.setdefault(method, []).append(envelope)
        example = example or (name, {m: preds[0] for m, preds in predictions.items()}, phones, fps)
    seconds = sum(len(audio) for _, audio, _ in clips) / SAMPLE_RATE
    # every draw of a clip meets the same events: MeshTalk's totals are `seeds` times the clips'
    events = {k: t // seeds for k, (_, t) in sync["MeshTalk (variant 0)"].items()}
    summary = {"clips": len(clips), "seconds": round(seconds, 1), "seeds": seeds, "methods": {
        m: {**_with_closure_interval(s, events["closure"]),
            **{f"envelope_{k}": v for k, v in metrics.envelope_correlation(openings[m], envelopes[m], fps).items()
               if k != "r_at_0"}}
        for m, s in sync.items()},
        "events": events}
    lines = [f"Real speech: {summary['clips']} clips in {folder}, {summary['seconds']} s, forced-aligned phones "
             f"({_event_counts(summary['events'])}); MeshTalk pooled over {seeds} seeds per clip; {_INTERVAL_NOTE}", "",
             "| method | closure_pct | closure_ci95_pct | opening_pct | rest_pct | closed_elsewhere_pct | envelope_r "
             "| envelope_lag_ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | " + " | ".join(map(_cell, v.values())) + " |"
              for m, v in summary["methods"].items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_speech.md").write_text("\n".join(lines) + "\n")
    _plot_real_lip_gap(out / "real_lip_gap.png", example, template)
    return summary


def evaluate_festival(corpus_dir: Path, split: str, voices: list[str], run: Path, checkpoint: Path, out: Path,
                      limit: int | None = None) -> dict:
    """Lip sync on the split's sentences spoken by Festival voices (model/data/festival.py), scored
    against Festival's own phone timing: {"voices": {voice: {method: {closure_pct, closure_ci95_pct,
    opening_pct, rest_pct, closed_elsewhere_pct}}}, "events": {voice: {kind: count}}}. MeshTalk is
    sampled with seed = utterance index."""
    template = load_template()
    texts = load_corpus(corpus_dir / f"{split}.npz", template).texts
    texts = texts if limit is None else texts[:limit]
    regressor = _regressor(run)
    summary = {"split": split, "utterances": len(texts), "voices": {}, "events": {}}
    for voice in voices:
        sync: dict[str, dict[str, tuple[int, int]]] = {}
        for u, text in enumerate(texts):
            audio, spoken = festival.synthesize(str(text), voice)
            phones = [(p.symbol, p.start, p.end) for p in spoken]
            anim = animate(audio, seed=u, checkpoint=checkpoint, template=template, device="cpu")
            predictions = {"MeshTalk (variant 0)": anim.vertices[0]}
            if regressor:
                predictions["regressor"] = _regress(regressor, audio, anim.vertices.shape[1], template.vertices)
            for method, pred in predictions.items():
                metrics.add_sync_scores(sync.setdefault(method, {}),
                                        metrics.lip_sync_scores(pred, anim.fps, phones, template))
        summary["events"][voice] = {k: t for k, (_, t) in next(iter(sync.values())).items()}
        closures = summary["events"][voice]["closure"]
        summary["voices"][voice] = {m: _with_closure_interval(counts, closures) for m, counts in sync.items()}
    lines = [f"Festival voices speaking the `{split}` split's {len(texts)} sentences, scored against Festival's "
             f"phone timing; {_INTERVAL_NOTE}", "",
             "| voice | method | closure_pct | closure_ci95_pct | opening_pct | rest_pct | closed_elsewhere_pct "
             "| events |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for voice, methods in summary["voices"].items():
        events = _event_counts(summary["events"][voice])
        lines += [f"| {voice} | {m} | " + " | ".join(map(_cell, v.values())) + f" | {events} |"
                  for m, v in methods.items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "festival.md").write_text("\n".join(lines) + "\n")
    return summary


def _plot_real_lip_gap(path: Path, example, template) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, predictions, phones, fps = example
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for method, pred in predictions.items():
        gap = metrics.lip_gap_mm(pred, template)
        ax.plot(np.arange(len(gap)) / fps, gap, label=method)
    for symbol, start, end in phones:
        if symbol in metrics.BILABIALS + metrics.OPEN_VOWELS:
            ax.axvspan(start, end, color="tab:red" if symbol in metrics.BILABIALS else "tab:green", alpha=0.2)
            ax.text(start, ax.get_ylim()[1] * 0.95, symbol, fontsize=7)
    ax.set(xlabel="s", ylabel="inner-lip gap (mm)", title=f"{name}: red p/b/m, green open vowels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown_table(summary: dict) -> str:
    keys = list(next(iter(summary["methods"].values())))
    envelope = summary["ground_truth_envelope"]
    lines = [f"Split `{summary['split']}`: {summary['utterances']} utterances, {summary['seconds']} s; "
             f"ground truth {summary['ground_truth_blinks_per_min']} blinks/min, mouth opening against the "
             f"speech envelope r = {envelope['r']} at {envelope['lag_ms']} ms (positive: the mouth leads).", "",
             "| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, values in summary["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(values[k]) for k in keys) + " |")
    if "diversity_mm" in summary:
        d = summary["diversity_mm"]
        lines += ["", "Variant diversity (std across variants, mm): as sampled, upper face "
                      f"{d['sampled_upper_face_mm']}, mouth {d['sampled_mouth_mm']}; with the lips shared "
                      f"(as animate returns them), upper face {d['shared_lips_upper_face_mm']}, mouth "
                      f"{d['shared_lips_mouth_mm']}; the data's own (its motion that does not follow the speech "
                      f"redrawn), upper face {d['data_upper_face_mm']}, mouth {d['data_mouth_mm']}."]
    return "\n".join(lines) + "\n"


def _plot_lip_gap(path: Path, example, fps: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u, truth, predictions, speaker = example
    fig, ax = plt.subplots(figsize=(9, 3.5))
    times = np.arange(len(truth)) / fps
    for name, pred in predictions.items():
        style = {"color": "k", "lw": 2} if name == GROUND_TRUTH else {}
        ax.plot(times, metrics.lip_gap_mm(pred, speaker), label=name, **style)
    ax.set(xlabel="s", ylabel="inner-lip gap (mm)", title=f"utterance {u}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score MeshTalk and the baselines on a held-out split.")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--run", type=Path, default=Path("runs/default"), help="training run (for the regressor)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--limit", type=int, help="score only the first N utterances")
    parser.add_argument("--out", type=Path, default=Path("out/eval"))
    parser.add_argument("--real", type=Path, help="folder of real speech clips (python -m model.data.real_speech)")
    parser.add_argument("--real-seeds", type=int, default=4, help="MeshTalk draws per real clip, pooled")
    parser.add_argument("--festival", help="Festival voices to speak the split's sentences, comma-separated "
                                           f"({', '.join(festival.VOICES)}; model/data/festival.py)")
    args = parser.parse_args(argv)
    summary = evaluate(args.corpus, args.split, args.run, args.checkpoint, args.variants, args.limit, args.out)
    print(markdown_table(summary))
    if args.real:
        summary["real_speech"] = evaluate_real(args.real, args.run, args.checkpoint, args.out, args.real_seeds)
        print((args.out / "real_speech.md").read_text())
    if args.festival:
        summary["festival"] = evaluate_festival(args.corpus, args.split, args.festival.split(","), args.run,
                                                args.checkpoint, args.out, args.limit)
        print((args.out / "festival.md").read_text())
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
