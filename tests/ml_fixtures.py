"""Tiny random models for tests: built once per test session with the real SmolLM2 tokenizer.

Import the fixtures into a test module with `from tests.ml_fixtures import tiny_model_path`.
"""

import shutil

import pytest

from training.ml import tiny


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    return tiny.load_smollm2_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, smollm2_tokenizer):
    return tiny.build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-a", tokenizer=smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_path_b(tmp_path_factory, smollm2_tokenizer):
    """A second tiny model with other random weights: a 'new policy version'."""
    config = tiny.TinyConfig(seed=1)
    return tiny.build_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-b", config=config, tokenizer=smollm2_tokenizer
    )


@pytest.fixture
def model_store(settings, tmp_path):
    """A fresh MODEL_STORE folder for this test."""
    settings.MODEL_STORE = tmp_path / "model-store"
    settings.MODEL_STORE.mkdir()
    return settings.MODEL_STORE


def register_copy(project, source, *, name: str, store, parent=None, round_number=None, deploy: bool = False):
    """Copy a checkpoint into the model store and register it as a policy version of `project`."""
    from training.registry import services

    destination = store / "policies" / f"{project.pk}-{name.replace(' ', '-')}"
    shutil.copytree(source, destination)
    version, _ = services.model_version_register(
        project=project, path=destination, name=name, parent=parent, round_number=round_number
    )
    if deploy:
        services.policy_deploy(version=version)
    return version
