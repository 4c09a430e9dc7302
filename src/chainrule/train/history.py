"""``History``: what ``fit`` returns, the per-epoch logs (and what a checkpoint restores)."""

from __future__ import annotations


class History:
    """What ``fit`` returns: ``history`` maps each logged name (``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``, ``lr``, ...) to its list of per-epoch values; ``epoch`` lists
    the epoch indices; ``interrupted`` is True if fit was stopped by Ctrl-C."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.interrupted = False

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
