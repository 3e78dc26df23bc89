"""On-policy iterative preference optimisation (RLHFlow, "RLHF Workflow", arXiv 2405.07863).

Each iteration: the current policy samples `generations_per_prompt` answers to every training
prompt; the reward model scores them (shaped as in training.ml.reward_shaping: standardised on the
SFT model's samples, length-controlled); the best and the worst answer of each prompt become a
preference pair (a prompt whose answers all score the same gives none); DPO trains on the pairs
for `epochs`, against the SFT model as the reference. The next iteration samples from the updated
policy, so the pairs stay on the policy's own distribution, which offline DPO's do not.

Before each iteration's DPO the KL to the reference is measured on the fresh samples (nats per
answer, the evaluation's definition); past `kl_budget` the stage stops and keeps the policy as it is.
DPO needs no sampling inside its steps, so on a CPU an iteration costs one batched sampling pass
plus a few DPO steps: far less than RLOO's sampling in every step.
"""

from training.ml.common import trainer_callback
from training.ml.kl_budget import kl_per_answer
from training.ml.reward_data import preference_pairs, prompts_from_records
from training.ml.reward_shaping import RewardShaper


def _sample(model, tokenizer, conversations, config, iteration: int):
    from training.ml.evaluate import sample_answers
    from training.ml.generation import SamplingParams

    model.eval()
    repeated = [c for c in conversations for _ in range(config.generations_per_prompt)]
    sampling = SamplingParams(
        temperature=config.temperature,
        max_new_tokens=config.max_completion_length,
        seed=config.seed + 1000 * iteration,
    )
    return sample_answers(model, tokenizer, repeated, sampling, batch_size=4 * config.generations_per_prompt)


def best_worst_pairs(conversations, answers, shaped: list[float], n: int) -> list[dict]:
    """One {prompt, chosen, rejected} row per prompt: its best against its worst answer."""
    from training.ml.reward_data import Ranking

    rankings = []
    for i, conversation in enumerate(conversations):
        group = list(range(i * n, (i + 1) * n))
        best = max(group, key=lambda j: shaped[j])
        worst = min(group, key=lambda j: shaped[j])
        if shaped[best] > shaped[worst] and answers[best].text != answers[worst].text:
            rankings.append(Ranking(conversation, [answers[best].text, answers[worst].text], [1, 2]))
    return preference_pairs(rankings)


def _dpo_step(model, reference, tokenizer, rows, work_dir, config, callback):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from training.ml.modeling import common_arguments, quiet_trainer

    args = DPOConfig(
        **common_arguments(work_dir, config),
        num_train_epochs=config.epochs,
        beta=config.kl_beta,
        per_device_train_batch_size=config.prompts_per_step,
        max_length=config.max_length,
    )
    trainer = quiet_trainer(
        DPOTrainer(
            model=model,
            ref_model=reference,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[callback],
        )
    )
    trainer.train()
    return trainer


def iterative_dpo(records, sft_model_path: str, reward_model_path: str, work_dir: str, config, progress, should_stop):
    """Train; return (model, tokenizer, history, cancelled, note). history: one entry per
    iteration with reward (mean shaped reward of its samples), kl, mean_length, pairs and loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ml.evaluate import as_conversation
    from training.ml.generation import pick_device
    from training.ml.modeling import dpo_metrics
    from training.ml.reward import RewardScorer

    conversations = [as_conversation(row["prompt"]) for row in prompts_from_records(records)]
    if not conversations:
        raise ValueError("iterative_dpo needs at least one prompt")
    device = pick_device()[0]
    tokenizer = AutoTokenizer.from_pretrained(sft_model_path)
    model = AutoModelForCausalLM.from_pretrained(sft_model_path, dtype="float32").to(device)
    reference = AutoModelForCausalLM.from_pretrained(sft_model_path, dtype="float32").to(device).eval()
    scorer = RewardScorer(reward_model_path)
    shaper = RewardShaper(normalize=config.reward_normalize, length_control=config.length_control)
    history, n, note = [], config.generations_per_prompt, None
    for iteration in range(config.iterations):
        answers = _sample(model, tokenizer, conversations, config, iteration)
        texts = [a.text for a in answers]
        scores = scorer.score([c for c in conversations for _ in range(n)], texts)
        shaped = shaper(scores, [len(a.token_ids) for a in answers])
        kl = kl_per_answer(model, reference, answers, batch_size=8)
        entry = {
            "reward": sum(shaped) / len(shaped),
            "kl": kl,
            "mean_length": sum(len(a.token_ids) for a in answers) / len(answers),
        }
        if config.kl_budget and kl > config.kl_budget:
            history.append(entry)
            note = f"KL passed the budget of {config.kl_budget:g} nats per answer"
            break
        rows = best_worst_pairs(conversations, answers, shaped, n)
        entry["pairs"] = len(rows)
        if rows:
            callback = trainer_callback(lambda *_: None, should_stop, dpo_metrics)  # progress: per iteration
            trainer = _dpo_step(model, reference, tokenizer, rows, work_dir, config, callback)
            model = trainer.model
            losses = [m["loss"] for m in callback.history if m.get("loss") is not None]
            entry["loss"] = losses[-1] if losses else None
            if callback.cancelled:
                return model, tokenizer, history + [entry], True, None
        history.append(entry)
        progress(iteration + 1, config.iterations, entry)
    return model, tokenizer, history, False, note
