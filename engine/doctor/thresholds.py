"""Every threshold the doctor uses, as data, with the reason behind it (docs/doctor.md has the sweep that
chose them and each finding's precision and recall). A false alarm on a healthy net is worse than a
missed warning, so each sits well clear of what healthy nets measure.

``tests/test_doctor.py`` trains a healthy and a pathological net for each and fails when a threshold is
moved past either side's measurement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    value: float
    reason: str


VANISHING_RATIO = Threshold(1e-2, (
    "the first hidden layer's weight gradient is under 1/100 of the last hidden layer's. Every weight moves by "
    "the learning rate times its gradient, so the first layers learn at under 1% of the rate of the last. "
    "The backward signal is multiplied at every layer by the activation's slope and the weights' scale; "
    "a factor under 1 compounds with depth (sigmoid's slope is at most 1/4). Healthy nets of the sweep, "
    "up to 20 layers deep, measured 0.1 to 3"))
EXPLODING_RATIO = Threshold(1e2, (
    "the first hidden layer's weight gradient is over 100 times the last hidden layer's: a factor over 1 "
    "per layer compounds with depth, and the first layers take steps far larger than the rest"))
MIN_DEPTH = Threshold(4, "gradient and signal ratios are read across at least 4 hidden layers: in a shallow "
                         "net no compounding can build up, and a small ratio means something else")
DEAD_FRACTION = Threshold(0.5, (
    "half of a ReLU layer's units output exactly 0 for every probe input: they pass no gradient back and "
    "nothing can bring them back. A healthy He-initialised ReLU layer reads about 0 on the 256-sample probe "
    "set (docs/telemetry.md)"))
SATURATED_FRACTION = Threshold(0.5, (
    "half of a layer's values sit where the activation's slope is under 5% of its largest: in a flat tail "
    "of sigmoid or tanh, passing almost no gradient back. Healthy tanh and sigmoid nets of the sweep "
    "measured under 0.2"))
DUPLICATE_FRACTION = Threshold(0.9, (
    "over 90% of a layer's units have the same incoming weights as another unit: identical units compute "
    "the same output and receive the same gradient, so they stay identical forever. Random initialisation "
    "gives 0"))
SIGNAL_DECADES = Threshold(2.0, (
    "the activations' spread at the last hidden layer is over two orders of magnitude from the first's at "
    "step 0. Var(z') = n Var(w) E[f(z)^2]: when the init's n Var(w) does not match the activation, every "
    "layer multiplies the variance by the same wrong factor"))
OVERFIT_GAP = Threshold(0.15, (
    "training accuracy ends over 0.15 above validation accuracy, and the gap is still widening: the net "
    "is learning its training samples rather than the pattern"))
OVERFIT_WIDENING = Threshold(0.05, "the gap grew by at least this much since the first epoch")
BN_EVAL_GAP = Threshold(0.2, (
    "validation accuracy with the moving averages (eval mode) is over 0.2 below the accuracy with each "
    "batch's own statistics: the moving averages lag behind the statistics the net was trained with "
    "(mu <- (1 - alpha) mu + alpha mu_batch with a tiny alpha)"))
STALLED_LOSS = Threshold(0.95, (
    "the training loss ends above 95% of the loss of guessing, ln(classes): the net has learnt next to "
    "nothing"))
STALLED_ACC = Threshold(0.1, "and its training accuracy is within 0.1 of chance, 1 / classes")
LR_TOO_HIGH = Threshold(1.5, (
    "after the first quarter of the run, the training loss rose to over 1.5 times its lowest value: the "
    "steps overshoot. A smaller learning rate (or batchnorm) makes the descent steady"))
