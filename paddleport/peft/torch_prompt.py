"""The torch side of prompt tuning and p-tuning: Hugging Face ``peft`` on a transformers model, set up from a
:class:`PromptPlan`."""

from __future__ import annotations

from pathlib import Path

from paddleport.errors import PaddleportError
from paddleport.peft.prompt import (PromptPlan, canonical_prompt_name, leave_out_zero_only_inputs,
                                    read_adapter_values, write_encoder_state)


def prompt_config(plan: PromptPlan):
    """``peft.PromptTuningConfig`` / ``PromptEncoderConfig`` for ``plan``, its dimensions given explicitly (peft
    guesses ``token_dim`` as the hidden size, which is not the word-embedding width of ALBERT and ELECTRA)."""
    import peft

    settings = plan.settings
    common = dict(task_type="SEQ_CLS", num_virtual_tokens=settings.num_virtual_tokens, token_dim=plan.token_dim,
                  num_layers=plan.num_layers, num_attention_heads=plan.num_attention_heads,
                  inference_mode=settings.inference)
    if settings.method == "prompt":  # TEXT: peft tokenizes the text and copies the word embeddings itself
        return peft.PromptTuningConfig(prompt_tuning_init=settings.prompt_tuning_init,
                                       prompt_tuning_init_text=settings.prompt_tuning_init_text,
                                       tokenizer_name_or_path=settings.tokenizer_name_or_path, **common)
    return peft.PromptEncoderConfig(
        encoder_reparameterization_type=settings.encoder_reparameterization_type,
        encoder_hidden_size=settings.hidden_size(plan.token_dim), encoder_num_layers=settings.encoder_num_layers,
        encoder_dropout=settings.encoder_dropout, **common)


def apply(model, plan: PromptPlan):
    """``peft.get_peft_model`` with the plan's settings; checks peft built the planned parameters, trains the
    planned ones, and prepends the prompts to the model's own word embeddings. All-zero task types are left out
    before peft's forward (``prompt.ZERO_ONLY_INPUTS``: peft would pass them on unextended)."""
    import peft

    words = model.get_input_embeddings()
    adapted = peft.get_peft_model(model, prompt_config(plan))
    names = {name for name, _ in canonical_parameters(adapted)}
    trainable = {canonical_prompt_name(name) for name, param in adapted.named_parameters() if param.requires_grad}
    planned = {param.name for param in plan.trainable}
    if plan.settings.inference:  # loaded to run: what trains does not matter (peft leaves the table trainable)
        trainable = planned
    if names != {param.name for param in plan.params} or trainable != planned:
        different = (names ^ {param.name for param in plan.params}) | (trainable ^ planned)
        raise PaddleportError(None, f"peft and paddleport's prompt plan disagree on {', '.join(sorted(different)[:4])}")
    if adapted.word_embeddings is not words:
        raise PaddleportError(None, "peft found another word-embedding table than the model's input embeddings")
    adapted.register_forward_pre_hook(_leave_out_zero_only_inputs, with_kwargs=True)
    return adapted


def _leave_out_zero_only_inputs(module, args, kwargs):
    return args, leave_out_zero_only_inputs(kwargs, lambda ids: not bool(ids.any()))


def inner_model(adapted):
    """The transformers model inside a prompt-learning peft model (module names as in the plain model)."""
    return adapted.base_model


def canonical_parameters(adapted):
    """(canonical name, parameter) of every parameter the adapted forward uses."""
    for name, param in adapted.named_parameters():
        canonical = canonical_prompt_name(name)
        if canonical is not None:
            yield canonical, param


def save_adapter(adapted, plan: PromptPlan, directory: Path, base_model: str | None) -> None:
    """peft's adapter directory; p-tuning's encoder beside it (peft saves only the encoder's output)."""
    adapted.peft_config["default"].base_model_name_or_path = base_model
    adapted.save_pretrained(str(directory))
    if plan.settings.has_encoder:
        encoder = {param.name for param in plan.encoder_params}
        write_encoder_state({name: param.detach().float().cpu().numpy()
                             for name, param in canonical_parameters(adapted) if name in encoder}, directory)


def load_adapter_weights(adapted, plan: PromptPlan, directory: Path) -> None:
    """An adapter directory (either layout) into a peft model adapted by ``plan``."""
    import torch

    parameters = dict(canonical_parameters(adapted))
    with torch.no_grad():
        for name, value in read_adapter_values(plan, directory).items():
            parameters[name].copy_(torch.from_numpy(value))
