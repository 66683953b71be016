import pytest
from pydantic import ValidationError

from deepscope.engine.activations import ACTIVATIONS
from deepscope.engine.config import RunConfig, describe_errors, field_limits
from deepscope.engine.datasets import DATASETS
from deepscope.engine.inits import INITS


def errors(data):
    with pytest.raises(ValidationError) as exc:
        RunConfig.model_validate(data)
    return describe_errors(exc.value)


def test_empty_config_is_valid_and_matches_contract_defaults():
    cfg = RunConfig.model_validate({})
    assert cfg.data.dataset == "spiral" and cfg.data.n_samples == 2000
    assert cfg.model.depth == 10 and cfg.model.width == 64 and cfg.model.activation == "relu"
    assert cfg.model.init == "he_normal" and cfg.model.init_std == 0.03 and cfg.model.bn_momentum == 0.1
    assert cfg.train.optimizer == "sgd" and cfg.train.lr == 0.05 and cfg.train.epochs == 20
    assert cfg.telemetry.every_steps == 10 and cfg.telemetry.bins == 32


def test_choices_come_from_the_registries():
    assert field_limits("model", "activation")["choices"] == list(ACTIVATIONS.names())
    assert field_limits("model", "init")["choices"] == list(INITS.names())
    assert field_limits("data", "dataset")["choices"] == list(DATASETS.names())
    assert set(ACTIVATIONS.names()) == {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "selu", "linear"}
    assert list(DATASETS.names()) == ["spiral", "circles", "moons", "xor", "gaussians", "digits", "shapes",
                                      "mnist1d", "mnist", "fashion_mnist", "cifar10"]


@pytest.mark.parametrize("data, field, words", [
    ({"model": {"depth": 500}}, "model.depth", ["between 1 and 100", "500"]),
    ({"model": {"activation": "swish"}}, "model.activation", ["sigmoid", "leaky_relu", "swish"]),
    ({"model": {"dropout": 1.0}}, "model.dropout", ["less than 1"]),
    ({"telemetry": {"bins": 4}}, "telemetry.bins", ["between 8 and 128"]),
    ({"model": {"colour": 1}}, "model.colour", ["not a field", "depth"]),
    ({"bogus": 1}, "bogus", ["not a field"]),
    ({"model": {"arch": "cnn"}}, "model.arch", ["image dataset", "spiral"]),
    ({"augment": {"hflip": True}}, "augment", ["image datasets only"]),
    ({"model": {"batchnorm": True}, "train": {"batch_size": 1}}, "train.batch_size", ["at least 2"]),
    ({"name": "x" * 81}, "name", ["80 characters"]),
])
def test_errors_name_the_field_and_what_is_allowed(data, field, words):
    errs = errors(data)
    assert errs[0]["field"] == field
    for w in words:
        assert w in errs[0]["msg"], errs[0]["msg"]


def test_cnn_and_augmentation_accepted_on_images():
    cfg = RunConfig.model_validate({"data": {"dataset": "shapes"}, "model": {"arch": "cnn"},
                                    "augment": {"hflip": True, "rotate_deg": 15}})
    assert cfg.augment.active
