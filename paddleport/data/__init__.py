"""Embedded default data: a real QQP sample (MIT licensed, see qqp/LICENSE and qqp/README.md)."""

from pathlib import Path

QQP_DIR = Path(__file__).resolve().parent / "qqp"
QQP_KSHOT_DIR = QQP_DIR / "k-shot-16-13"
