"""Headless baking: `blender -b scene.blend -c meshtalk bake --object NAME --audio FILE [...]`.

Bakes speech animation onto a mesh object of the open .blend and saves it: over the open file, or
as --out. Run `blender -c meshtalk bake --help` for the options. Every failure prints one line on
stderr, `meshtalk: <what is wrong and what to do>`, and exits with its own status:

| status | meaning |
|---:|---|
| 0 | baked and saved |
| 1 | the bake failed for another reason |
| 2 | bad arguments |
| 3 | the object: not found, not a mesh, or not the MeshTalk head's topology |
| 4 | the audio: missing, unreadable, empty or silent |
| 5 | the model weights: missing or unreadable (reinstall the extension) |
| 6 | saving: no --out and the open .blend was never saved, or the file could not be written |
"""

import argparse
import sys
from pathlib import Path

import bpy

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OBJECT = 3
EXIT_AUDIO = 4
EXIT_WEIGHTS = 5
EXIT_SAVE = 6


class CliError(Exception):
    """A failure with its exit status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors as CliError instead of exiting Blender."""

    def error(self, message: str):
        raise CliError(EXIT_USAGE, f"{message} (see `{self.prog} --help`)")


def _at_least(kind, low, strict: bool = False):
    """An argparse type: `kind` (int, float) >= low, or > low when strict."""
    def parse(text: str):
        value = kind(text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _parser() -> _Parser:
    parser = _Parser(prog="blender -c meshtalk", description="MeshTalk: speech-driven face animation, headless.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bake = commands.add_parser("bake", help="bake speech animation onto a mesh and save the .blend",
                               description="Bake speech animation onto a mesh object as shape keys and save "
                                           "the .blend (over the open file unless --out is given).")
    bake.add_argument("--object", required=True, metavar="NAME", help="the mesh object to animate")
    bake.add_argument("--audio", required=True, type=Path, metavar="FILE", help="speech audio (WAV, FLAC, ...)")
    bake.add_argument("--variants", type=_at_least(int, 1), default=1, metavar="K",
                      help="upper-face variants to sample; the first is shown (default 1)")
    bake.add_argument("--seed", type=_at_least(int, 0), default=0, metavar="S", help="sampling seed (default 0)")
    bake.add_argument("--temperature", type=_at_least(float, 0.0, strict=True), default=1.0, metavar="T",
                      help="sampling temperature, lower is calmer (default 1)")
    bake.add_argument("--layout", choices=("compact", "exact"), default="compact",
                      help="compact: few shape keys with weight curves; exact: one key per frame (default compact)")
    bake.add_argument("--start-frame", type=int, metavar="F",
                      help="scene frame of the audio's first sample (default: the scene's start frame; a sound strip "
                           "that already plays the file sets it instead)")
    bake.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                      help="where the model runs: auto is the CPU, faster than CUDA for this model (default auto)")
    bake.add_argument("--out", type=Path, metavar="FILE.blend", help="save here instead of over the open .blend")
    bake.set_defaults(run=_bake)
    return parser


def main(argv: list[str]) -> int:
    """The `meshtalk` command line command: argv without the command name; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        return args.run(args)
    except SystemExit as done:  # --help
        return done.code or EXIT_OK
    except CliError as error:
        print(f"meshtalk: {error}", file=sys.stderr)
        return error.status


def _target(out: Path | None) -> str:
    """Where the baked .blend goes: --out, else the open file; refuses an unsaved file up front."""
    if out is not None:
        if out.suffix != ".blend":
            raise CliError(EXIT_USAGE, f"--out {out} must end in .blend")
        return str(out.resolve())
    if not bpy.data.filepath:
        raise CliError(EXIT_SAVE, "the open scene was never saved: open a .blend file (blender -b scene.blend ...) "
                                  "or pass --out FILE.blend")
    return bpy.data.filepath


def _checked(status: int, check, *args):
    """check(*args), its MeshTalkError turned into a CliError with `status`."""
    from .bake import MeshTalkError

    try:
        return check(*args)
    except MeshTalkError as error:
        raise CliError(status, str(error)) from error


def _bake(args) -> int:
    from . import bake
    from .model.audio import AudioError
    from .model.checkpoint import CheckpointError

    target = _target(args.out)
    context = bpy.context
    obj = _checked(EXIT_OBJECT, bake.target_object, context, args.object)
    _checked(EXIT_OBJECT, bake.mesh_template, obj)
    _checked(EXIT_WEIGHTS, bake.check_weights)
    scene = context.scene
    scene.frame_set(scene.frame_start if args.start_frame is None else args.start_frame)
    try:
        animation = bake.animate_object(context, obj, str(args.audio.resolve()), variants=args.variants,
                                        seed=args.seed, temperature=args.temperature, device=args.device,
                                        layout=args.layout.upper())
    except bake.MeshTalkError as error:  # the audio, unreadable weights, or the model itself
        causes = ((AudioError, EXIT_AUDIO), (CheckpointError, EXIT_WEIGHTS))
        status = next((code for kind, code in causes if isinstance(error.__cause__, kind)), EXIT_FAILED)
        raise CliError(status, str(error)) from error
    try:
        bpy.ops.wm.save_as_mainfile(filepath=target)
    except RuntimeError as error:
        raise CliError(EXIT_SAVE, f"could not save {target}: {str(error).strip()}") from error
    seconds = (animation.vertices.shape[1] - 1) / animation.fps
    print(f"meshtalk: baked {seconds:.1f} s of speech onto {obj.name!r} from frame {obj.meshtalk.start_frame} "
          f"({args.layout}, {args.variants} variant(s)); saved {target}")
    return EXIT_OK
