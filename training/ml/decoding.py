"""Sampling a batch of answers, where an answer that has ended leaves the batch.

transformers' `generate` keeps computing every row of a batch until the longest answer ends: in
a batch of 16 where one answer runs to 96 tokens and the rest end after 20, four fifths of the
compute goes to rows that are already done. `sample_batch` decodes with the same model call,
the same warpers (repetition penalty, then training.ml.sampling's temperature, top-k and top-p)
and a seeded generator, and drops a row from the batch and from its key/value cache as soon as
it samples an end-of-turn token.
"""

from training.ml.sampling import TruncatedSampling


def sample_batch(model, input_ids, attention_mask, params, *, stop_ids, seed: int, on_step=None) -> list[list[int]]:
    """New tokens for each row of a left-padded batch, up to and including its end-of-turn token
    (up to max_new_tokens when it never ends). `params` is a SamplingParams; `on_step` is called
    after every decoding step and may raise to abort."""
    import torch
    from transformers import DynamicCache, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    device = input_ids.device
    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.temperature > 0:
        processors.append(TruncatedSampling(params.temperature, params.top_k, params.top_p))
    generator = torch.Generator(device=device).manual_seed(seed)
    stops = torch.tensor(list(stop_ids), device=device)
    tokens: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    rows = torch.arange(input_ids.shape[0], device=device)  # which answer each batch row belongs to
    cache = DynamicCache()
    sequences, step_input = input_ids, input_ids
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        for _ in range(params.max_new_tokens):
            # logits_to_keep=1: the prompt's first pass scores only its last position, as generate
            # does (the vocabulary projection of every prompt token is most of that pass).
            logits = model(
                input_ids=step_input,
                attention_mask=attention_mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            scores = processors(sequences, logits.float())
            if params.temperature > 0:
                chosen = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
            else:
                chosen = scores.argmax(dim=-1)
            for row, token in zip(rows.tolist(), chosen.tolist(), strict=True):
                tokens[row].append(token)
            if on_step is not None:
                on_step()
            step_input = chosen[:, None]
            sequences = torch.cat([sequences, step_input], dim=-1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=-1)
            positions = positions[:, -1:] + 1
            going = ~torch.isin(chosen, stops)
            if not going.all():
                if not going.any():
                    break
                keep = going.nonzero().flatten()
                rows, step_input, sequences = rows[keep], step_input[keep], sequences[keep]
                attention_mask, positions = attention_mask[keep], positions[keep]
                cache.batch_select_indices(keep)
    return tokens
