"""Check that a Hugging Face and a Paddle directory hold the same model, and load both (lazy imports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paddleport.errors import PaddleportError
from paddleport.registry import architecture_of_class, input_names_of
from paddleport.runtime import quiet_logger, quiet_transformers

# Config keys that decide every parameter's shape; both directories must agree on them.
STRUCTURAL_KEYS = (
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "embedding_size", "q_groups", "k_groups", "v_groups",
    "post_attention_groups", "intermediate_groups", "output_groups", "hidden_act", "layer_norm_eps",
    "dim", "n_layers", "n_heads", "hidden_dim", "activation", "num_hidden_groups", "inner_group_num",
)


@dataclass
class CheckpointPair:
    """The two directories, their shared architecture and the HF config dict."""

    hf_dir: Path
    paddle_dir: Path
    architecture: str
    config: dict[str, Any]

    @property
    def max_positions(self) -> int:
        """The longest input the model takes (RoBERTa's positions start after the padding index)."""
        from paddleport.core.configuration import max_input_length

        return max_input_length(self.config, self.hf_dir / "config.json")

    @property
    def input_names(self) -> tuple[str, ...]:
        """The inputs this checkpoint's models take (no token_type_ids for DistilBERT; task types for an ERNIE
        with ``use_task_id``)."""
        return input_names_of(self.config)

    @property
    def num_labels(self) -> int:
        return len(self.config.get("id2label") or {0: 0, 1: 1})


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint that passed the pre-flight check (``paddleport.checkpoint``)."""
    from paddleport.checkpoint import check_checkpoint

    return check_checkpoint(model_dir).config


def architecture_of(config: dict[str, Any], model_dir: str | Path) -> str:
    architectures = config.get("architectures") or []
    if not architectures:
        raise PaddleportError(Path(model_dir) / "config.json", "names no architecture (\"architectures\" is empty)")
    architecture_of_class(architectures[0], Path(model_dir) / "config.json")
    return architectures[0]


def check_pair(hf_dir: str | Path, paddle_dir: str | Path) -> CheckpointPair:
    """Same architecture, vocabulary and shape-deciding config on both sides, or a one-line error."""
    hf_config, paddle_config = read_config(hf_dir), read_config(paddle_dir)
    hf_arch, paddle_arch = architecture_of(hf_config, hf_dir), architecture_of(paddle_config, paddle_dir)
    if hf_arch != paddle_arch:
        raise PaddleportError(paddle_dir, f"architecture {paddle_arch} differs from {hf_dir}'s {hf_arch}")
    for key in STRUCTURAL_KEYS:
        if hf_config.get(key) != paddle_config.get(key):
            what = "vocabulary size" if key == "vocab_size" else key
            raise PaddleportError(paddle_dir, f"{what} {paddle_config.get(key)!r} differs from "
                                              f"{hf_dir}'s {hf_config.get(key)!r}")
    hf_labels, paddle_labels = len(hf_config.get("id2label") or {}), len(paddle_config.get("id2label") or {})
    if hf_arch.endswith("SequenceClassification") and hf_labels != paddle_labels:
        raise PaddleportError(paddle_dir, f"{paddle_labels} labels differ from {hf_dir}'s {hf_labels}")
    return CheckpointPair(Path(hf_dir), Path(paddle_dir), hf_arch, hf_config)


def load_torch_model(pair: CheckpointPair):
    """The transformers model in eval mode; every parameter must come from the checkpoint."""
    import transformers

    cls = getattr(transformers, pair.architecture)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(str(pair.hf_dir), output_loading_info=True, dtype="float32")
    except (OSError, RuntimeError, ValueError) as error:
        raise PaddleportError(pair.hf_dir, f"weights do not match config.json ({_first_line(error)})") from None
    problems = {kind: info.get(kind) for kind in ("missing_keys", "mismatched_keys") if info.get(kind)}
    if problems:
        kind, names = next(iter(problems.items()))
        names = sorted(str(name[0] if isinstance(name, tuple) else name) for name in names)
        raise PaddleportError(pair.hf_dir, f"weights do not match config.json ({kind.replace('_', ' ')}: "
                                           f"{', '.join(names[:4])})")
    return model.eval()


def load_paddle_model(pair: CheckpointPair):
    """Our Paddle model in eval mode; a parameter missing from the directory is an error, not a fresh init."""
    import paddleport.models as models

    cls = getattr(models, pair.architecture)
    try:
        with quiet_logger("paddleport.models"):  # missing parameters are reported below, as an error
            model = cls.from_pretrained(pair.paddle_dir)
    except PaddleportError as error:
        if error.where is None:
            raise PaddleportError(pair.paddle_dir, f"weights do not match config.json ({error.problem})") from None
        raise
    fresh = model.loading_info.newly_initialised
    if fresh:
        raise PaddleportError(pair.paddle_dir, f"weights do not match config.json (missing: {', '.join(fresh[:4])})")
    return model


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
