"""The training copy of the chat template renders exactly what the model's own template renders,
and its {% generation %} markers cover the assistant's answers (and their end-of-turn) only."""

import pytest

from training.ml import chat_template

SINGLE = [{"role": "user", "content": "台灣第一高峰是那一座？"}]
MULTI = [
    {"role": "user", "content": "我想學做菜，應該從哪裡開始？"},
    {"role": "assistant", "content": "可以從簡單的家常菜開始，例如番茄炒蛋。"},
    {"role": "user", "content": "番茄炒蛋要怎麼做？"},
    {"role": "assistant", "content": "先炒蛋，再炒番茄。\n\n最後混合。"},
]
WITH_SYSTEM = [{"role": "system", "content": "Answer in one word."}, *MULTI[:2]]
ANSWERED = [*SINGLE, {"role": "assistant", "content": "玉山。"}]


def test_bundled_tokenizer_ships_the_template_we_know(smollm2_tokenizer):
    assert smollm2_tokenizer.chat_template == chat_template.SMOLLM2_TEMPLATE


@pytest.mark.parametrize(
    "messages",
    [SINGLE, ANSWERED, MULTI, MULTI[:3], WITH_SYSTEM],
    ids=["single", "answered", "multi", "multi-open", "system"],
)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_training_copy_renders_identically(smollm2_tokenizer, messages, add_generation_prompt):
    own = chat_template.render(smollm2_tokenizer, messages, add_generation_prompt=add_generation_prompt)
    training = chat_template.render(
        smollm2_tokenizer,
        messages,
        add_generation_prompt=add_generation_prompt,
        template=chat_template.training_template(smollm2_tokenizer.chat_template),
    )
    assert training == own
    assert own.startswith("<|im_start|>system\n")


def test_generation_markers_cover_assistant_answers_only(smollm2_tokenizer):
    encoded = smollm2_tokenizer.apply_chat_template(
        MULTI,
        chat_template=chat_template.training_template(smollm2_tokenizer.chat_template),
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    marked = smollm2_tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert marked == MULTI[1]["content"] + "<|im_end|>" + MULTI[3]["content"] + "<|im_end|>"


def test_unknown_template_is_refused_and_marked_template_kept():
    with pytest.raises(chat_template.UnsupportedTemplate):
        chat_template.training_template("{{ messages }}")
    marked = "{% generation %}{{ x }}{% endgeneration %}"
    assert chat_template.training_template(marked) == marked


def test_end_of_turn_is_im_end(smollm2_tokenizer):
    assert smollm2_tokenizer.convert_ids_to_tokens(chat_template.end_of_turn_ids(smollm2_tokenizer)[0]) == "<|im_end|>"
