"""`ftorch setup axolotl|unsloth`: build a provider's own virtual environment."""

from __future__ import annotations


def add_parser(sub) -> None:
    setup = sub.add_parser("setup", help="build a provider's own environment (axolotl: .venv-axolotl, ~2-3 min, "
                           "4.3 GB; unsloth: .venv-unsloth, ~2 min, 3 GB)")
    setup.add_argument("target", choices=("axolotl", "unsloth"))
    setup.add_argument("--force", action="store_true", help="delete the environment and build it again")
    setup.add_argument("--python", help="interpreter to make the venv with (default: the one behind ftorch's venv)")


def run(args) -> int:
    from ..config.compose import find_project
    from ..setup_envs import setup_axolotl, setup_unsloth
    from .console import out

    build = {"axolotl": setup_axolotl, "unsloth": setup_unsloth}[args.target]
    python = build(find_project().root, python=args.python, force=args.force)
    out.print(f"[green]{args.target.capitalize()} environment ready[/] {python}")
    if args.target == "axolotl":
        out.print("train with it: ftorch train provider=axolotl")
    else:  # Unsloth's child process runs in the interpreter ftorch runs in
        out.print(f"train with it: {python.parent / 'ftorch'} train provider=unsloth")
    return 0
