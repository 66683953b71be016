"""A run as one standalone PyTorch script: ``script_for(config)``.

The script is built from the engine's own source, read from its files (so the web service exports
without importing torch): the dataset generator, the activation, the init, ``Block`` and ``Net``,
dropout, augmentation, the optimizer and ``evaluate``. Only the short training loop at its end is
written here, and ``tests/test_export.py`` checks that it reproduces a run's final training loss, so
the two loops cannot drift apart unseen. The script needs torch and numpy (and scikit-learn for
``digits``), nothing of DeepScope.
"""

from __future__ import annotations

import ast
import importlib.util
import pprint
from functools import cache
from pathlib import Path

from deepscope.engine.activations import ACTIVATIONS
from deepscope.engine.config import RunConfig
from deepscope.engine.datasets import DATASETS
from deepscope.engine.inits import INITS
from deepscope.engine.optimizers import OPTIMIZERS


@cache
def _module(module: str) -> tuple[list[str], ast.Module]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"no source for {module}")
    text = Path(spec.origin).read_text(encoding="utf-8")
    return text.splitlines(), ast.parse(text)


def _in_docstring(text: str) -> str:
    """A run's name is user text: inside the script's docstring its quotes and backslashes are escaped
    (a name holding \"\"\" ended the docstring early, and the script did not compile)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def source_of(module: str, *names: str, decorators: bool = True) -> str:
    """The top-level functions, classes or constants of an engine module that define ``names``, as written
    there and in its order. ``decorators=False`` drops a registry's ``@X.register(...)``: the script
    calls the function itself."""
    lines, tree = _module(module)
    found, seen = [], set()
    for node in tree.body:
        targets = [t for t in getattr(node, "targets", []) if isinstance(t, ast.Name | ast.Tuple)]
        defined = {getattr(node, "name", None)} | {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if defined & set(names):
            seen |= defined
            firsts = [d.lineno for d in getattr(node, "decorator_list", [])] if decorators else []
            found.append("\n".join(lines[min([node.lineno, *firsts]) - 1:node.end_lineno]))
    if set(names) - seen:
        raise LookupError(f"{module} defines no {', '.join(sorted(set(names) - seen))}")
    return "\n\n".join(found)


def module_body(module: str) -> str:
    """A module's code without its docstring and its imports of DeepScope (the script defines what they gave)."""
    lines, tree = _module(module)
    drop: set[int] = set()
    for i, node in enumerate(tree.body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ours = isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("deepscope", "__future__")
        if docstring or ours:
            drop.update(range(node.lineno, node.end_lineno + 1))
    kept = [line for n, line in enumerate(lines, 1) if n not in drop and "isort:" not in line]
    return "\n".join(kept).strip("\n")


def _registered(registry, name: str) -> tuple[str, str]:
    """(function name, source without its registry decorator) of one registry entry."""
    impl = registry.get(name)
    return impl.__name__, source_of(impl.__module__, impl.__name__, decorators=False)


_REGISTRY_SHIM = '''
class _Registry:
    """The part of DeepScope's name -> implementation registry that the dataset code below uses."""

    def __init__(self):
        self._entries = {}

    def register(self, name, help="", **meta):
        def add(impl):
            self._entries[name] = SimpleNamespace(impl=impl, meta=meta)
            return impl
        return add

    def get(self, name):
        return self._entries[name].impl

    def entry(self, name):
        return self._entries[name]


DATASETS = _Registry()


class DatasetUnavailable(ValueError):
    """A file-backed dataset whose files are not in DATA_DIR."""
'''

_TRAINING_LOOP = '''
def main() -> dict:
    seed = cfg.train.seed
    torch.manual_seed(seed)  # the init and dropout draw from torch's global generator
    use_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    data = split_dataset(cfg.data, seed, DATA_DIR).to(device)
    # Batch order and augmentation draw from their own generator, so they do not depend on the init.
    gen = torch.Generator(device="cpu").manual_seed(seed)

    model = Net(cfg.model, data.input_shape, data.n_classes).to(device)
    model.train()
    optimizer = make_optimizer(model.parameters(), cfg.train, True)
    n_train = len(data.y_train)
    bs = min(cfg.train.batch_size, n_train)
    # A last batch of one sample would break batchnorm and adds nothing: it is dropped.
    steps_per_epoch = n_train // bs + (1 if n_train % bs >= 2 else 0)
    # Training-set metrics are measured in eval mode on a fixed subset, as DeepScope does.
    eval_idx = torch.randperm(n_train, generator=gen)[:EVAL_TRAIN_SAMPLES].to(device)

    metrics = {}
    for epoch in range(cfg.train.epochs):
        order = torch.randperm(n_train, generator=gen).to(device)
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            xb = augment_batch(data.x_train[idx], cfg.augment, gen)
            loss = F.cross_entropy(model(xb), data.y_train[idx])
            if not math.isfinite(float(loss.detach())):
                print(f"diverged: the loss became {float(loss)} at epoch {epoch}, batch {b}")
                return metrics
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # the gradients DeepScope draws per layer
            optimizer.step()
        train_loss, train_acc = evaluate(model, data.x_train[eval_idx], data.y_train[eval_idx])
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
        metrics = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                   "val_loss": val_loss, "val_acc": val_acc}
        print(f"epoch {epoch:3d}  train_loss {train_loss:.8f}  train_acc {train_acc:.4f}  "
              f"val_loss {val_loss:.8f}  val_acc {val_acc:.4f}")
    return metrics


if __name__ == "__main__":
    main()
'''


def _tricks(cfg: RunConfig) -> list[str]:
    m, a = cfg.model, cfg.augment
    out = [f"{m.depth} hidden {'conv blocks' if m.arch == 'cnn' else 'layers'} of {m.width}, "
           f"activation {m.activation}" + (f" (slope a = {m.leaky_slope:g})" if m.activation == "leaky_relu" else ""),
           f"init {m.init}" + (f" (std {m.init_std:g})" if m.init == "small_normal" else "")]
    if m.batchnorm:
        out.append(f"batchnorm, moving averages with momentum alpha = {m.bn_momentum:g}")
    if m.dropout:
        out.append(f"{m.dropout_mode} dropout, keep probability p = {1 - m.dropout:g}")
    if a.active:
        out.append("augmentation: " + ", ".join(
            part for part, on in (("flips", a.hflip), (f"rotations up to {a.rotate_deg:g} degrees", a.rotate_deg),
                                  (f"colour shifts up to {a.color_shift:g}", a.color_shift),
                                  (f"scaling by up to {a.scale:g}", a.scale)) if on))
    out.append(f"{cfg.train.optimizer}, lr {cfg.train.lr:g}, {cfg.train.epochs} epochs of batches of {cfg.train.batch_size}")
    return out


def _header(cfg: RunConfig, origin: str) -> str:
    needs = "torch, numpy" + (" and scikit-learn" if cfg.data.dataset == "digits" else "")
    tricks = "".join(f"- {t}\n" for t in _tricks(cfg))
    config = cfg.model_dump(exclude={"name"})
    config["telemetry"] = {}  # watching is DeepScope's part; it does not change the numbers
    return "\n\n".join([
        f'''#!/usr/bin/env python3
"""{_in_docstring(cfg.display_name())}: a DeepScope run as a standalone PyTorch script ({origin}).

What it trains:
{tricks}
It needs {needs}; nothing of DeepScope. Same seed, same numbers: at one torch thread
(OMP_NUM_THREADS=1 python this_file.py) on the machine that trained the run, each epoch's
metrics match the run's. Edit CONFIG to try another trick.
"""''',
        "from __future__ import annotations",
        "import functools\nimport math\nimport os\nfrom collections.abc import Iterator\n"
        "from contextlib import contextmanager\nfrom dataclasses import dataclass\nfrom pathlib import Path\n"
        "from types import SimpleNamespace",
        "import numpy as np\nimport torch\nfrom torch import nn\nfrom torch.nn import functional as F",
        "# The run's configuration, as DeepScope stored it.\nCONFIG = " + pprint.pformat(config, width=100, sort_dicts=False),
        "cfg = SimpleNamespace(**{key: SimpleNamespace(**value) if isinstance(value, dict) else value\n"
        "                         for key, value in CONFIG.items()})\ncfg.augment.active = " + repr(cfg.augment.active),
        "# Only the file-backed sets (mnist, fashion_mnist, cifar10) read it.\n"
        'DATA_DIR = Path(os.environ.get("DEEPSCOPE_DATA_DIR", "data"))',
    ])


def _data(cfg: RunConfig) -> list[str]:
    return [
        "\n# 1. The data: generated (or read) and split as DeepScope does, normalised with the training part's statistics.",
        _REGISTRY_SHIM,
        source_of("deepscope.engine.datasets", "RawSet", "DataSplit"),
        module_body(DATASETS.get(cfg.data.dataset).__module__),
        source_of("deepscope.engine.datasets", "split_dataset"),
    ]


def _network(cfg: RunConfig) -> list[str]:
    m = cfg.model
    act_name, act_src = _registered(ACTIVATIONS, m.activation)
    init_name, init_src = _registered(INITS, m.init)
    return [
        "\n# 2. The network: hidden blocks of weights -> batchnorm (optional) -> activation -> dropout (optional).",
        f"# The activation: {ACTIVATIONS.entry(m.activation).help}",
        act_src,
        f"\ndef make_activation(name: str, leaky_slope: float) -> nn.Module:\n    return {act_name}(leaky_slope)",
        "# The initial weights' scale is what keeps the activation variance steady with depth (or not).",
        source_of("deepscope.engine.theory", "_NODES", "_WEIGHTS", "second_moments", "init_gain"),
        source_of("deepscope.engine.inits", "_gain"),
        f"# The init: {INITS.entry(m.init).help}",
        init_src,
        f"\ndef init_weights(w: torch.Tensor, cfg) -> None:\n    with torch.no_grad():\n        {init_name}(w, cfg)",
        source_of("deepscope.engine.models", "ClassicDropout", "Block", "pooled_blocks", "Net"),
    ]


def _training(cfg: RunConfig) -> list[str]:
    opt_name, opt_src = _registered(OPTIMIZERS, cfg.train.optimizer)
    return [
        "\n# 3. Data augmentation, on training batches only.",
        source_of("deepscope.engine.augment", "augment_batch"),
        f"\n# 4. Training: {OPTIMIZERS.entry(cfg.train.optimizer).help}",
        opt_src,
        f"\ndef make_optimizer(params, cfg, fused: bool):\n    return {opt_name}(params, cfg, fused)",
        source_of("deepscope.engine.loop", "EVAL_TRAIN_SAMPLES", "EVAL_CHUNK", "evaluate"),
        _TRAINING_LOOP,
    ]


def script_for(config: RunConfig | dict, version: str = "", run_id: str = "") -> str:
    """The run's standalone training script. At one torch thread on the machine that trained the run,
    it prints the run's epoch metrics."""
    cfg = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
    origin = f"DeepScope {version}".strip() + (f", run {run_id}" if run_id else "")
    parts = [_header(cfg, origin), *_data(cfg), *_network(cfg), *_training(cfg)]
    return "\n\n".join(p.strip("\n") if i == 0 else p.rstrip("\n") for i, p in enumerate(parts)) + "\n"
