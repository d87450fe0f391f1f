"""GLUE task descriptions: columns (by header name), label lists, metrics and file names."""

from __future__ import annotations

from dataclasses import dataclass, field

from paddleport.errors import PaddleportError


@dataclass(frozen=True)
class GlueTask:
    """What the runner needs to know about one GLUE task.

    Column candidates are tried in order: first the GLUE TSV header names, then the names the
    ``datasets`` hub version uses (``sentence1``/``label``...), so CSV/JSON files in either style work.
    """

    name: str
    text_a: tuple[str, ...]
    text_b: tuple[str, ...] = ()
    label: tuple[str, ...] = ("label",)
    labels: tuple[str, ...] = ("0", "1")  # label strings, index = class id; () for regression
    main_metric: str = "accuracy"
    dev_files: tuple[str, ...] = ("dev.tsv",)
    test_files: tuple[str, ...] = ("test.tsv",)
    submission_names: tuple[str, ...] = ()
    hub_name: str = ""
    hub_eval_splits: tuple[str, ...] = ("validation",)
    headerless_columns: tuple[str, ...] = ()  # column names of header-less GLUE TSVs (CoLA)
    id_columns: tuple[str, ...] = field(default=("id", "index", "idx"))

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)


GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", text_a=("sentence",), main_metric="matthews_correlation",
                 submission_names=("CoLA",), hub_name="cola",
                 headerless_columns=("source", "label", "original_label", "sentence")),
        GlueTask("sst2", text_a=("sentence",), submission_names=("SST-2",), hub_name="sst2"),
        GlueTask("mrpc", text_a=("#1 String", "sentence1"), text_b=("#2 String", "sentence2"),
                 label=("Quality", "label"), main_metric="acc_and_f1",
                 submission_names=("MRPC",), hub_name="mrpc"),
        GlueTask("stsb", text_a=("sentence1",), text_b=("sentence2",), label=("score", "label"), labels=(),
                 main_metric="spearmanr", submission_names=("STS-B",), hub_name="stsb"),
        GlueTask("qqp", text_a=("question1",), text_b=("question2",), label=("is_duplicate", "label"),
                 main_metric="acc_and_f1", submission_names=("QQP",), hub_name="qqp"),
        GlueTask("mnli", text_a=("sentence1", "premise"), text_b=("sentence2", "hypothesis"),
                 label=("gold_label", "label"), labels=("entailment", "neutral", "contradiction"),
                 dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
                 test_files=("test_matched.tsv", "test_mismatched.tsv"),
                 submission_names=("MNLI-m", "MNLI-mm"), hub_name="mnli",
                 hub_eval_splits=("validation_matched", "validation_mismatched")),
        GlueTask("qnli", text_a=("question",), text_b=("sentence",), labels=("entailment", "not_entailment"),
                 submission_names=("QNLI",), hub_name="qnli"),
        GlueTask("rte", text_a=("sentence1",), text_b=("sentence2",), labels=("entailment", "not_entailment"),
                 submission_names=("RTE",), hub_name="rte"),
        GlueTask("wnli", text_a=("sentence1",), text_b=("sentence2",), submission_names=("WNLI",),
                 hub_name="wnli"),
    )
}
TASK_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> GlueTask:
    """The task called ``name`` (case-insensitive, GLUE spellings such as ``SST-2`` accepted)."""
    key = TASK_ALIASES.get(name.lower(), name.lower())
    if key not in GLUE_TASKS:
        raise PaddleportError("--task", f"unknown task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]
