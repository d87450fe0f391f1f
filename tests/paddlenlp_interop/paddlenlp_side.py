"""The PaddleNLP half of ``make test-paddlenlp``: runs in ``.venv-paddlenlp`` (paddlenlp 2.8.1, numpy 1.26), imports
only paddle, paddlenlp and numpy, and exchanges files with the main environment's test
(``tests/test_paddlenlp_interop.py``), which drives it.

    paddlenlp_side.py JOBS.json      (a list of jobs, run in one process: importing paddlenlp takes seconds)

    {"op": "load", "directory": D, "class_name": C, "inputs": I.npz, "out": O.npz}
        PaddleNLP's C.from_pretrained(D) (what ``paddleport convert --to paddlenlp`` wrote), run on I.
    {"op": "save", "class_name": C, "config": {...}, "seed": S, "directory": D, "inputs": I.npz, "out": O.npz}
        a seeded PaddleNLP C of that config, every tensor non-trivial, saved by PaddleNLP's save_pretrained into D,
        run on I.

OUT.npz holds the model's outputs in PaddleNLP's order (``out_0``, ``out_1``, ...) and the names of the tensors it
loaded (``loaded``) or saved; the attention mask is given as each model's forward takes it.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings

import numpy as np


def _quiet_imports():
    warnings.filterwarnings("ignore")
    import paddle
    import paddlenlp.transformers as transformers
    from paddlenlp.utils.log import logger

    logger.set_level("ERROR")
    paddle.set_device("cpu")
    return paddle, transformers


# PaddleNLP 2.8's ELECTRA adds a 2-D attention_mask to the scores as it is (an additive mask); BERT, RoBERTa,
# DistilBERT, ALBERT and ERNIE turn a 0/1 mask into (1 - mask) * -1e4 themselves (their modeling.py).
ADDITIVE_MASK_MODELS = ("electra",)
NO_TOKEN_TYPES = ("distilbert", "deberta-v2")  # DeBERTa-v3 has no token-type embeddings


def _forward(paddle, model, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    model.eval()
    model_type = model.config.model_type
    mask = inputs["attention_mask"].astype("float32")
    if model_type in ADDITIVE_MASK_MODELS:
        mask = (1.0 - mask) * -1e4
    feed = {"input_ids": paddle.to_tensor(inputs["input_ids"]), "attention_mask": paddle.to_tensor(mask)}
    if model_type not in NO_TOKEN_TYPES:
        feed["token_type_ids"] = paddle.to_tensor(inputs["token_type_ids"])
    # ERNIE 2.0/3.0's task types: PaddleNLP's ErnieModel takes them, its heads do not (they fill in task_id)
    if getattr(model.config, "use_task_id", False) and "task_type_ids" in inspect.signature(model.forward).parameters:
        feed["task_type_ids"] = paddle.to_tensor(inputs["task_type_ids"])
    with paddle.no_grad():
        outputs = model(**feed)
    if isinstance(outputs, paddle.Tensor):
        outputs = [outputs]
    # the tensors the class returns, in order (a tuple of per-layer states, where one is returned, is not compared)
    tensors = [output.numpy() for output in outputs if isinstance(output, paddle.Tensor)]
    print(type(model).__name__, [tensor.shape for tensor in tensors], file=sys.stderr)
    return tensors


def load(paddle, transformers, directory: str, class_name: str, inputs: str, out: str) -> None:
    model = getattr(transformers, class_name).from_pretrained(directory)
    outputs = _forward(paddle, model, dict(np.load(inputs)))
    np.savez(out, **{f"out_{i}": output for i, output in enumerate(outputs)},
             loaded=np.array(sorted(model.state_dict())))
    # the class's parameter names and shapes, as PaddleNLP builds it from the converted config.json
    with open(out.removesuffix(".npz") + "-state.json", "w") as stream:
        json.dump({name: list(value.shape) for name, value in model.state_dict().items()}, stream, indent=1)


def save(paddle, transformers, class_name: str, config: dict, seed: int, directory: str, inputs: str,
         out: str) -> None:
    paddle.seed(int(seed))
    cls = getattr(transformers, class_name)
    config = cls.config_class(**config)
    model = cls(config)
    rng = np.random.default_rng(int(seed))
    with paddle.no_grad():  # LayerNorms and biases off their initial ones and zeros, as in a trained checkpoint
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.set_value(parameter + paddle.to_tensor(
                    rng.normal(0.0, 0.1, parameter.shape).astype("float32")))
    model.save_pretrained(directory)
    outputs = _forward(paddle, model, dict(np.load(inputs)))
    np.savez(out, **{f"out_{i}": output for i, output in enumerate(outputs)},
             saved=np.array(sorted(model.state_dict())))


if __name__ == "__main__":
    paddle_module, paddlenlp_transformers = _quiet_imports()
    operations = {"load": load, "save": save}
    for job in json.load(open(sys.argv[1])):
        operation = operations[job.pop("op")]
        operation(paddle_module, paddlenlp_transformers, **job)
