"""``paddleport merge ADAPTER_DIR BASE_DIR OUT`` (argparse only; the work is in ``paddleport.peft.adapters``)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge", help="merge a LoRA adapter into its base model",
        description="Fold a peft LoRA adapter (either layout) into its base checkpoint (either framework) and save "
                    "the merged model as a plain checkpoint of --framework.")
    parser.add_argument("adapter_dir", help="adapter directory (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("base_dir", help="the base model checkpoint the adapter was trained on")
    parser.add_argument("out", help="output directory (must not exist unless --force)")
    parser.add_argument("--framework", choices=("torch", "paddle"), default="torch",
                        help="merge with and save for this framework (default torch: a transformers checkpoint)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from paddleport.peft.adapters import merge_adapter

    out = merge_adapter(args.adapter_dir, args.base_dir, args.out, framework=args.framework, force=args.force)
    print(f"merged model: {out}")
    return 0
