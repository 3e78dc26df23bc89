"""Chat templates: the model's own for generation, and a training copy for assistant-only loss.

TRL's assistant-only loss needs `{% generation %}` … `{% endgeneration %}` around the assistant's
text in the template; SmolLM2's template (ChatML) has none. The training copy renders exactly
the same text — a test proves it — and marks the assistant content plus its end-of-turn token,
so the model learns where to stop.
"""

END_OF_TURN = "<|im_end|>"

GENERATION_MARKER = "{% generation %}"

# SmolLM2-Instruct's own template, as its tokenizer ships it.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A model's own template → its training copy. Add a pair here to support another family.
TRAINING_COPIES = {SMOLLM2_TEMPLATE: SMOLLM2_TRAINING_TEMPLATE}


class UnsupportedTemplate(ValueError):
    """No training copy is known for this template: use full-sequence loss or add one."""


def training_template(template: str | None) -> str:
    """The training copy of a model's own chat template (the template itself if already marked)."""
    if not template:
        raise UnsupportedTemplate("This tokenizer has no chat template.")
    if GENERATION_MARKER in template:
        return template
    copy = TRAINING_COPIES.get(template.strip())
    if copy is None:
        raise UnsupportedTemplate(
            "No training copy of this chat template is known; add one to training.ml.chat_template.TRAINING_COPIES."
        )
    return copy


def render(tokenizer, messages: list[dict], *, add_generation_prompt: bool, template: str | None = None) -> str:
    """The text the model sees for a conversation, through `template` or the tokenizer's own."""
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def end_of_turn_ids(tokenizer) -> list[int]:
    """Tokens that end the assistant's turn: <|im_end|> where the vocabulary has it, and EOS."""
    ids = []
    if END_OF_TURN in tokenizer.get_vocab():
        ids.append(tokenizer.convert_tokens_to_ids(END_OF_TURN))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
