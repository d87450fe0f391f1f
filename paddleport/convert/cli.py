"""``paddleport convert SRC OUT``."""

from __future__ import annotations

import argparse

from paddleport.convert.converter import DIRECTIONS, DTYPES, FORMATS, convert_checkpoint
from paddleport.registry import supported_text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint between Hugging Face and Paddle",
        description="Convert a Hugging Face checkpoint directory to Paddle (or back with --to hf), or to a PaddleNLP "
                    "2.8 directory (--to paddlenlp); a PaddleNLP directory (model_state.pdparams with PaddleNLP's "
                    "config.json or model_config.json) converts with --to hf; a peft adapter directory "
                    "(adapter_config.json) converts the same way.")
    parser.add_argument("src", help="source checkpoint directory (config.json + weights)")
    parser.add_argument("out", help="output directory (must not exist unless --force)")
    parser.add_argument("--to", choices=DIRECTIONS, default="paddle",
                        help="target: paddle (paddleport), hf (transformers) or paddlenlp (PaddleNLP 2.8's names, "
                             "model_state.pdparams) (default: paddle)")
    parser.add_argument("--arch", metavar="CLASS",
                        help=f"target class, e.g. to add or drop a head ({supported_text()})")
    parser.add_argument("--dtype", choices=DTYPES, help="cast floating tensors (default: keep the source dtype)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="safetensors",
                        help="weights file format for --to paddle (default: safetensors)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run, frameworks=())  # reads and writes files only: no framework set-up


def run(args: argparse.Namespace) -> int:
    from paddleport.peft.lora import is_adapter_dir

    if is_adapter_dir(args.src):  # a peft adapter directory (adapter_config.json)
        from paddleport.peft.adapters import convert_adapter

        print(convert_adapter(args.src, args.out, to=args.to, force=args.force).summary())
        return 0
    report = convert_checkpoint(args.src, args.out, to=args.to, arch=args.arch, dtype=args.dtype, fmt=args.fmt,
                                force=args.force)
    print(report.summary())
    return 0
