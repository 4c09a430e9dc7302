"""Training loops: ``fit`` / ``evaluate``, metrics, Keras-style callbacks and history plots.

``plot_history`` lives in ``chainrule.train.plots`` and imports matplotlib only when called.
"""

from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    JSONLogger,
    LRSchedulerCallback,
    ModelCheckpoint,
    ProgressBar,
)
from .health import GradientHealth
from .history import History
from .leaks import LeakGuard, LeakGuardCallback, leak_guard
from .metrics import Accuracy, Loss, Mean, Metric, TopKAccuracy, accuracy, top_k_accuracy
from .plots import plot_history
from .trainer import Trainer, evaluate, fit
