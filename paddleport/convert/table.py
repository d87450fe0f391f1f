"""The declarative conversion table every architecture fills in, and its expansion into parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

from paddleport.convert.transforms import Transform
from paddleport.core.configuration import PretrainedConfig

ShapeFn = Callable[[PretrainedConfig], tuple[int, ...]]
# Placeholders a rule's names may hold, and the config attribute giving how many each expands to.
# ALBERT's shared weights expand over layer groups and their inner layers, not over num_hidden_layers.
PLACEHOLDERS = {"layer": "num_hidden_layers", "group": "num_hidden_groups", "inner": "inner_group_num"}


@dataclass(frozen=True)
class Rule:
    """One parameter: Hugging Face (torch-side) name pattern -> Paddle name pattern, typed transform, HF-layout shape.

    Patterns may hold the ``PLACEHOLDERS`` (``{layer}``, expanded over ``num_hidden_layers``, ...); ``paddle``
    may differ from ``hf``, and each direction matches its source names against its own side's pattern.
    ``when`` limits a rule to configs where the parameter exists (an untied MLM decoder, say). ``groups`` names
    the config attribute holding a grouped convolution's group count (SqueezeBERT's ``q_groups``), None otherwise.

    ``paddleport diff`` uses the same rules for any torch module / Paddle layer pair: there a pattern's
    placeholders (any ``{name}``) match one dot-free name segment (:func:`rename`), a rule naming a module
    renames everything under it, ``transform`` None means "by the torch module's type" and ``shape`` is unused.
    """

    hf: str
    paddle: str
    transform: Transform | None = None
    shape: ShapeFn | None = None
    when: Callable[[PretrainedConfig], bool] = lambda config: True
    groups: str | None = None


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def pattern_regex(pattern: str) -> re.Pattern:
    """A name pattern as a regex: each ``{name}`` placeholder matches one dot-free segment, the rest literally;
    the pattern matches a whole name or a leading part of it that ends at a dot."""
    pieces = _PLACEHOLDER.split(pattern)  # literal, placeholder, literal, ...
    body = "".join(re.escape(piece) if index % 2 == 0 else f"(?P<{piece}>[^.]+)"
                   for index, piece in enumerate(pieces))
    return re.compile(body + r"(?=\.|$)")


def rename(name: str, source: str, target: str) -> tuple[str, bool] | None:
    """``name`` renamed from the ``source`` pattern to the ``target`` pattern, placeholders carried over, and
    whether the whole name matched (not only a module prefix); None when ``source`` does not match."""
    match = pattern_regex(source).match(name)
    if match is None:
        return None
    renamed = _PLACEHOLDER.sub(lambda placeholder: match.group(placeholder.group(1)), target)
    return renamed + name[match.end():], match.end() == len(name)


@dataclass(frozen=True)
class ParamSpec:
    hf_name: str
    paddle_name: str
    transform: Transform
    hf_shape: tuple[int, ...]
    group: str  # "base", "pooler" or a head's name
    groups: int = 1  # a grouped convolution's group count (the rule's config attribute), else 1
    groups_key: str | None = None  # that config attribute (SqueezeBERT's q_groups), None for no grouped layer

    @property
    def paddle_shape(self) -> tuple[int, ...]:
        return self.transform.paddle_shape(self.hf_shape)


@dataclass(frozen=True)
class ClassLayout:
    """What a model class holds: the base model (prefixed or not), the pooler, and which head."""

    prefixed: bool
    pooler: bool
    head: str | None = None


@dataclass(frozen=True)
class PaddleNLPMap:
    """An architecture's names in PaddleNLP 2.8 (``paddlenlp/transformers/<arch>/modeling.py``), beside its table.

    ``rules`` rename paddleport's (Hugging Face) names, without the base prefix, to PaddleNLP's: ``Rule(hf,
    paddle)`` with ``paddle`` the PaddleNLP pattern; a rule naming a module renames everything under it; a name no
    rule matches is the same in PaddleNLP. PaddleNLP keeps paddle's ``[in, out]`` Linear layout, so a parameter
    takes its table rule's transform unless its rule here names another. ``classes``: transformers class ->
    PaddleNLP class (a class absent here has no PaddleNLP counterpart paddleport converts). ``config_keys``:
    PaddleNLP config key -> the Hugging Face key holding the same value, where they differ; ``defaults``: the
    values PaddleNLP's config class takes for keys a saved ``config.json`` may omit (its ``configuration.py``);
    ``fixed``: Hugging Face config values PaddleNLP's model computes with whatever its config says (ERNIE's
    LayerNorm epsilon), where ``fixed_when`` holds for the config (always if it names no condition): a checkpoint
    with another value is not written, and one read takes this value.
    ``copies``: PaddleNLP names in a class with one of the table's ``heads`` that hold the same tensor as another
    PaddleNLP name (a tied MLM decoder, a bias PaddleNLP links under two names), ``when`` the config ties them:
    written as copies, and on reading skipped once checked equal to the original (or taken as the original where
    that is absent).
    """

    base_prefix: str
    rules: tuple[Rule, ...]
    classes: dict[str, str]
    defaults: dict[str, object]
    config_keys: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)
    fixed_when: dict[str, Callable[[PretrainedConfig], bool]] = field(default_factory=dict)
    copies: tuple["PaddleNLPCopy", ...] = ()


@dataclass(frozen=True)
class PaddleNLPCopy:
    name: str
    original: str
    heads: tuple[str, ...]
    when: Callable[[PretrainedConfig], bool] = lambda config: True


@dataclass
class ArchitectureTable:
    """One architecture's complete name table, in the spirit of llama.cpp's per-architecture tensor maps."""

    model_type: str
    base_prefix: str
    base: tuple[Rule, ...]
    pooler: tuple[Rule, ...]
    heads: dict[str, tuple[Rule, ...]]
    classes: dict[str, ClassLayout]
    # Source names that duplicate another tensor while config.tie_word_embeddings is true:
    # skipped after checking they are equal.
    tied_to_embeddings: dict[str, str] = field(default_factory=dict)
    # Non-persistent buffers that old checkpoints carry: skipped by name.
    buffers: tuple[str, ...] = ()
    # How many layer applications use a parameter (HF name as in a head class): ALBERT's shared groups say more
    # than one; conversion.json records every parameter used more than once.
    uses: Callable[[PretrainedConfig, str], int] = lambda config, hf_name: 1
    # The same parameters under PaddleNLP's names (``paddleport convert --to paddlenlp``), where PaddleNLP has them.
    paddlenlp: PaddleNLPMap | None = None
    # Legacy TF-era names, renamed before matching.
    legacy_renames: ClassVar[tuple[tuple[str, str], ...]] = (
        (r"LayerNorm\.gamma$", "LayerNorm.weight"),
        (r"LayerNorm\.beta$", "LayerNorm.bias"),
    )

    def base_class(self) -> str:
        return next(name for name, layout in self.classes.items() if not layout.prefixed)

    def all_specs(self, config: PretrainedConfig) -> list[ParamSpec]:
        """Every parameter any class of this architecture can hold, named as in a prefixed (head) class."""
        specs = self._expand(self.base, "base", config, self.base_prefix)
        specs += self._expand(self.pooler, "pooler", config, self.base_prefix)
        for head, rules in self.heads.items():
            specs += self._expand(rules, head, config, "")
        return specs

    def class_specs(self, config: PretrainedConfig, class_name: str) -> list[ParamSpec]:
        layout = self.classes[class_name]
        groups = {"base"} | ({"pooler"} if layout.pooler else set()) | ({layout.head} if layout.head else set())
        specs = [s for s in self.all_specs(config) if s.group in groups]
        if layout.prefixed:
            return specs
        return [replace(s, hf_name=s.hf_name.removeprefix(self.base_prefix),
                        paddle_name=s.paddle_name.removeprefix(self.base_prefix)) for s in specs]

    def canonical_name(self, name: str, known: set[str]) -> str:
        """Legacy renames, then the base prefix added where the checkpoint was saved without it."""
        for pattern, replacement in self.legacy_renames:
            name = re.sub(pattern, replacement, name)
        if name not in known and self.base_prefix + name in known:
            return self.base_prefix + name
        return name

    def tied_target(self, canonical: str, config: PretrainedConfig) -> str | None:
        return self.tied_to_embeddings.get(canonical) if config.tie_word_embeddings else None

    def is_buffer(self, name: str) -> bool:
        return any(re.search(pattern, name) for pattern in self.buffers)

    @staticmethod
    def _expand(rules, group: str, config: PretrainedConfig, prefix: str) -> list[ParamSpec]:
        specs = []
        for rule in rules:
            if not rule.when(config):
                continue
            for values in _placeholder_values(rule.hf, config):
                specs.append(ParamSpec(prefix + rule.hf.format(**values), prefix + rule.paddle.format(**values),
                                       rule.transform, tuple(rule.shape(config)), group,
                                       getattr(config, rule.groups) if rule.groups else 1, rule.groups))
        return specs


def _placeholder_values(pattern: str, config: PretrainedConfig) -> list[dict[str, int]]:
    """Every assignment of the placeholders ``pattern`` holds, in order ({} for a pattern without any)."""
    assignments: list[dict[str, int]] = [{}]
    for name, attribute in PLACEHOLDERS.items():
        if "{" + name + "}" in pattern:
            assignments = [dict(a, **{name: i}) for a in assignments for i in range(getattr(config, attribute))]
    return assignments
