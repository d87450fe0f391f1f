"""Adapter directories: convert between the torch and Paddle layouts, and merge an adapter into its base model."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddleport.core.tensor_io import PADDLE_FORMAT_TAG, SafetensorsSource, write_safetensors_stream
from paddleport.errors import PaddleportError
from paddleport.fsutil import atomic_directory, check_output_target
from paddleport.peft.bottleneck import is_bottleneck_dir
from paddleport.peft.lora import ADAPTER_WEIGHTS, SAVED_PREFIX, check_adapter_fits
from paddleport.peft.methods import (framework_module, plan_for_checkpoint, read_adapter_settings,
                                     transform_of_adapter_key)
from paddleport.peft.prompt import SAVED_PREFIX as PROMPT_SAVED_PREFIX
from paddleport.peft.prompt import PromptSettings

HF_FORMAT_TAG = "pt"
FRAMEWORKS = ("torch", "paddle")


@dataclass
class AdapterConversion:
    source: str
    output: str
    direction: str
    tensors: int

    def summary(self) -> str:
        return f"converted adapter {self.source} -> {self.output} ({self.tensors} tensors, to {self.direction})"


def adapter_layout(adapter_dir: Path) -> str:
    """"paddle" or "hf": the layout of the adapter's tensors (its safetensors ``format`` tag)."""
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise PaddleportError(adapter_dir, f"has no {ADAPTER_WEIGHTS}")
    with SafetensorsSource([path]) as source:
        return "paddle" if source.metadata.get("format") == PADDLE_FORMAT_TAG else "hf"


def convert_adapter(src: str | Path, out: str | Path, *, to: str, force: bool = False) -> AdapterConversion:
    """A peft adapter directory into the other framework's layout: every key kept, each tensor transposed or
    not by the table (:func:`transform_of_adapter_key`); config and other files copied unchanged."""
    src, out = Path(src), Path(out)
    if to not in ("paddle", "hf"):
        raise PaddleportError("--to", f"a peft adapter converts with --to paddle or hf, not {to!r}")
    if is_bottleneck_dir(src):
        return _convert_bottleneck(src, out, to, force)
    settings = read_adapter_settings(src)  # an adapter paddleport implements
    check_output_target(out, reads_from=[src])
    if out.exists() and not force:
        raise PaddleportError(out, "output already exists (pass --force to replace it)")
    layout = adapter_layout(src)
    if layout == to:
        raise PaddleportError(src / ADAPTER_WEIGHTS, f"already holds {'Paddle' if to == 'paddle' else 'Hugging Face'}"
                                                     f"-layout tensors (use --to {'hf' if to == 'paddle' else 'paddle'})")
    with SafetensorsSource([src / ADAPTER_WEIGHTS]) as source:
        names = source.names()
        transforms = {name: transform_of_adapter_key(settings, name) for name in names}
        plan = [(name, source.dtype(name), tuple(source.shape(name)) if transforms[name] is None
                 else transforms[name].paddle_shape(tuple(source.shape(name)))) for name in names]

        def produce(name: str) -> np.ndarray:
            array = source.read(name)
            transform = transforms[name]
            if transform is None:
                return array  # a frozen original_module copy: carried unchanged
            return transform.to_paddle(array) if to == "paddle" else transform.to_hf(array)

        with atomic_directory(out, replace=force, reads_from=[src]) as partial:
            for item in src.iterdir():
                if item.is_file() and item.name != ADAPTER_WEIGHTS:
                    shutil.copy2(item, partial / item.name)
            tag = PADDLE_FORMAT_TAG if to == "paddle" else HF_FORMAT_TAG
            write_safetensors_stream(partial / ADAPTER_WEIGHTS, plan, produce, {"format": tag})
    return AdapterConversion(str(src), str(out), to, len(names))


def _convert_bottleneck(src: Path, out: Path, to: str, force: bool) -> AdapterConversion:
    """An AdapterHub bottleneck adapter directory into the other layout (config files copied unchanged)."""
    from paddleport.peft.bottleneck import BOTTLENECK_FILE, HEAD_FILE, convert_bottleneck_dir, read_bottleneck_settings

    read_bottleneck_settings(src)
    check_output_target(out, reads_from=[src])
    if out.exists() and not force:
        raise PaddleportError(out, "output already exists (pass --force to replace it)")
    with atomic_directory(out, replace=force, reads_from=[src]) as partial:
        for item in src.iterdir():
            if item.is_file() and item.name not in (BOTTLENECK_FILE, HEAD_FILE):
                shutil.copy2(item, partial / item.name)
        tensors = convert_bottleneck_dir(src, partial, to)
    return AdapterConversion(str(src), str(out), to, tensors)


def adapter_num_labels(adapter_dir: Path, base_config: dict) -> int:
    """Label count of the adapter's classifier (modules_to_save), else the base model's."""
    from paddleport.registry import architecture

    labels = architecture(base_config.get("model_type"), "config.json").labels_parameter
    with SafetensorsSource([Path(adapter_dir) / ADAPTER_WEIGHTS]) as source:
        for key in (SAVED_PREFIX + labels, PROMPT_SAVED_PREFIX + labels):  # LoRA's, prompt learning's
            if key in source.names():
                return int(source.shape(key)[0])
    return len(base_config.get("id2label") or {}) or int(base_config.get("num_labels", 2))


def _base_in_layout(base_dir: Path, framework: str, work: Path) -> Path:
    """``base_dir`` as a checkpoint of ``framework`` (converted into ``work`` if it is the other one's)."""
    from paddleport.convert import convert_checkpoint
    from paddleport.core.tensor_io import is_paddle_checkpoint

    wants_paddle = framework == "paddle"
    if is_paddle_checkpoint(base_dir) == wants_paddle:
        return base_dir
    converted = work / "base"
    convert_checkpoint(base_dir, converted, to="paddle" if wants_paddle else "hf", force=True)
    return converted


def load_adapted_model(adapter_dir: Path, base_dir: Path, framework: str, work: Path):
    """The base model (sequence classification, the adapter's label count) with the adapter applied, eval mode:
    a peft model (torch) or paddleport's model with its adapter layers (Paddle). Returns (model, plan)."""
    from paddleport.glue_runners.checkpoint_info import inspect_model_dir

    if is_bottleneck_dir(adapter_dir):
        return _load_bottleneck_model(Path(adapter_dir), Path(base_dir), framework, work)
    settings = read_adapter_settings(adapter_dir)
    info = inspect_model_dir(base_dir, option="BASE_DIR")
    num_labels = adapter_num_labels(adapter_dir, info.config)
    plan = plan_for_checkpoint(info.config, num_labels, settings)
    with SafetensorsSource([Path(adapter_dir) / ADAPTER_WEIGHTS]) as source:  # before any model is built
        shapes = {name: tuple(source.shape(name)) for name in source.names()}
    check_adapter_fits(plan, shapes, adapter_layout(adapter_dir), Path(adapter_dir) / ADAPTER_WEIGHTS)
    base = _base_in_layout(Path(base_dir), framework, work)
    module = framework_module(plan, framework)
    if framework == "torch":
        import transformers

        from paddleport.parity.loading import quiet_transformers

        quiet_transformers()
        adapter = adapter_dir
        if adapter_layout(adapter_dir) == "paddle":
            adapter = work / "adapter"
            convert_adapter(adapter_dir, adapter, to="hf", force=True)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=num_labels)
        adapted = module.apply(model, plan)
        module.load_adapter_weights(adapted, plan, adapter)
        return adapted.eval(), plan
    import logging

    from paddleport.models import AutoModelForSequenceClassification

    logging.getLogger("paddleport.models").setLevel(logging.ERROR)  # the classifier comes from the adapter
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels)
    adapted = module.apply(model, plan)
    module.load_adapter_weights(adapted, plan, adapter_dir)
    adapted.eval()
    return adapted, plan


def _load_bottleneck_model(adapter_dir: Path, base_dir: Path, framework: str, work: Path):
    """The base model with an AdapterHub bottleneck adapter (either layout) applied, eval mode."""
    from paddleport.glue_runners.checkpoint_info import inspect_model_dir
    from paddleport.peft import bottleneck

    settings, _ = bottleneck.read_bottleneck_settings(adapter_dir)
    info = inspect_model_dir(base_dir, option="BASE_DIR")
    num_labels = bottleneck.adapter_num_labels(adapter_dir, info.config)
    plan = plan_for_checkpoint(info.config, num_labels, settings)
    arrays, layout = bottleneck.read_bottleneck_arrays(adapter_dir)  # checked before any model is built
    bottleneck.check_bottleneck_fits(plan, {key: value.shape for key, value in arrays.items()}, layout, adapter_dir)
    base = _base_in_layout(base_dir, framework, work)
    if framework == "torch":
        import transformers

        from paddleport.parity.loading import quiet_transformers

        quiet_transformers()
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=num_labels)
    else:
        import logging

        from paddleport.models import AutoModelForSequenceClassification

        logging.getLogger("paddleport.models").setLevel(logging.ERROR)  # the classifier comes from the adapter
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels)
    module = framework_module(plan, framework)
    module.apply(model, plan)
    module.load_adapter_weights(model, plan, adapter_dir)
    model.eval()
    return model, plan


def merge_adapter(adapter_dir: str | Path, base_dir: str | Path, out: str | Path, *, framework: str = "torch",
                  force: bool = False) -> Path:
    """The base model with the adapter (either layout) folded into its weights, saved as a plain checkpoint of
    ``framework``, which converts like any other."""
    adapter_dir, base_dir, out = Path(adapter_dir), Path(base_dir), Path(out)
    if is_bottleneck_dir(adapter_dir):
        raise PaddleportError(adapter_dir, "is a bottleneck adapter: it adds layers with a non-linearity, which "
                                           "cannot be folded into the base weights (load it with its base instead)")
    if isinstance(read_adapter_settings(adapter_dir), PromptSettings):
        raise PaddleportError(adapter_dir, "holds virtual tokens (prompt tuning / p-tuning), which extend the input: "
                                           "there are no weights to merge them into")
    if framework not in FRAMEWORKS:
        raise PaddleportError("--framework", f"must be torch or paddle, not {framework!r}")
    check_output_target(out, reads_from=[adapter_dir, base_dir])
    if out.exists() and not force:
        raise PaddleportError(out, "output already exists (pass --force to replace it)")
    from paddleport.convert.converter import copy_tokenizer_files

    with tempfile.TemporaryDirectory(prefix="paddleport-merge-") as work:
        model, plan = load_adapted_model(adapter_dir, base_dir, framework, Path(work))
        merged = framework_module(plan, framework).merge_lora(model, plan)
        with atomic_directory(out, replace=force, reads_from=[adapter_dir, base_dir]) as partial:
            merged.save_pretrained(str(partial) if framework == "torch" else partial)
            copy_tokenizer_files(base_dir, partial)
    return out

