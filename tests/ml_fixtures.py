"""Fixtures for the ML tests: tiny random models, built once per test session with the real
SmolLM2 tokenizer, and a fresh model store per test.

tests/conftest.py lists this module in `pytest_plugins`: a test takes `tiny_model_path` (or
`tiny_model_path_b`, `smollm2_tokenizer`, `model_store`) as an argument and imports nothing.
Helpers such as `register_copy` live in tests/factories.py.
"""

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
