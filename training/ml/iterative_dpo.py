"""On-policy iterative preference optimisation (RLHFlow, "RLHF Workflow", arXiv 2405.07863).

Each iteration: the current policy samples `generations_per_prompt` answers to every training
prompt; the reward model scores them (shaped as in training.ml.reward_shaping: standardised on the
SFT model's samples, length-controlled); the best and the worst answer of each prompt become a
preference pair (a prompt whose answers all score the same gives none); DPO trains on the pairs
for `epochs`, against the SFT model as the reference. The next iteration samples from the updated
policy, so the pairs stay on the policy's own distribution, which offline DPO's do not.

Before each iteration's DPO the KL to the reference is measured on the fresh samples (nats per
answer, the evaluation's definition); past `kl_budget` the stage stops and keeps the policy as it is.
The first iteration's policy is its reference, so its KL is 0 without measuring; later iterations
measure it on the first KL_ANSWERS_PER_PROMPT answers of every prompt (an unbiased estimate of the
same mean: the answers are drawn independently), as two forward passes over every sample cost as
much as sampling them on a CPU. The reward model scores each prompt's answers packed behind one
copy of the prompt (RewardScorer.score_rankings). DPO needs no sampling inside its steps, so an
iteration costs one batched sampling pass plus a few DPO steps: far less than RLOO's sampling in
every step.

Under several processes (torchrun): each process samples and scores its share of the prompts; the
shaping statistics, the KL and the reported means are over every process's samples; every process
trains DPO on all the processes' pairs, which TRL shares out as it does for offline DPO (gradients
all-reduced); process 0 decides whether the KL budget stops the stage, for all of them.

Sampling is transformers' (training.ml.evaluate.sample_answers), or vLLM's where the policy's
`sampler` says so (VLLMSampler): one engine per process, whose weights are replaced by the
policy's before each iteration samples, as TRL's colocated vLLM mode does.
"""

from training.ml import distributed
from training.ml.common import trainer_callback
from training.ml.kl_budget import answer_kls
from training.ml.modeling import dpo_loss
from training.ml.reward_data import preference_pairs, prompts_from_records
from training.ml.reward_shaping import RewardShaper

SEED_STRIDE_PER_PROCESS = 1_000_000  # each process draws its own answers (process 0: the seeds of one process)
KL_ANSWERS_PER_PROMPT = 1  # answers per prompt the KL is measured on after the first iteration


def _sampling_params(config, iteration: int):
    from training.ml.generation import SamplingParams

    return SamplingParams(
        temperature=config.temperature,
        max_new_tokens=config.max_completion_length,
        seed=config.seed + 1000 * iteration + SEED_STRIDE_PER_PROCESS * distributed.rank(),
    )


def _sample(model, tokenizer, conversations, config, iteration: int):
    from training.ml.evaluate import sample_answers

    model.eval()
    repeated = [c for c in conversations for _ in range(config.generations_per_prompt)]
    sampling = _sampling_params(config, iteration)
    return sample_answers(model, tokenizer, repeated, sampling)


class VLLMSampler:
    """iterative DPO's sampling on vLLM (a CUDA machine with vllm installed): an engine loaded once
    from the SFT checkpoint, in this process, whose weights are the policy's before each sampling.
    Under torchrun each process has its own engine on its own GPU (vLLM's external_launcher, as in
    TRL's colocate mode). Same interface as _sample; not measured on this project's hardware yet."""

    GPU_MEMORY_SHARE = 0.3  # the rest is the policy's, the reference's and the optimizer's (TRL's default)

    def __init__(self, model_path: str, config):
        from vllm import LLM

        from training.ml.generation import pick_device

        extra = {}
        if distributed.active():
            extra = {"distributed_executor_backend": "external_launcher", "seed": distributed.rank()}
        self.llm = LLM(
            model=str(model_path),
            dtype=pick_device()[1],
            gpu_memory_utilization=self.GPU_MEMORY_SHARE,
            **extra,
        )

    def load_policy(self, model) -> None:
        """The policy's current weights into the engine (TRL's VLLMGeneration.sync_weights, colocate)."""
        engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        engine_model.load_weights((name, parameter.data) for name, parameter in model.named_parameters())
        self.llm.reset_prefix_cache()

    def __call__(self, model, tokenizer, conversations, config, iteration: int):
        from vllm import SamplingParams as VLLMSamplingParams

        from training.ml.chat_template import end_of_turn_ids, render
        from training.ml.evaluate import Answer
        from training.ml.generation import answer_text_clean

        self.load_policy(model)
        params = _sampling_params(config, iteration)
        stop_ids = end_of_turn_ids(tokenizer)
        repeated = [c for c in conversations for _ in range(config.generations_per_prompt)]
        prompt_ids = [
            tokenizer(render(tokenizer, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
            for c in repeated
        ]
        requests = [
            VLLMSamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or -1,
                max_tokens=params.max_new_tokens,
                seed=params.seed + i,
                stop_token_ids=stop_ids,
            )
            for i in range(len(prompt_ids))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], requests, use_tqdm=False)
        answers = []
        for ids, output in zip(prompt_ids, outputs, strict=True):
            completion = output.outputs[0]
            tokens = list(completion.token_ids)  # with the end-of-turn token when it stopped on one
            stopped = completion.finish_reason == "stop"
            answers.append(Answer(answer_text_clean(completion.text), ids, tokens, "stop" if stopped else "length"))
        return answers


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
    """DPO on the rows, from `model` against `reference`: the trained model. The trainer's hold on
    the model (under torchrun, its DDP wrapper) is released, so the next iteration's wraps it afresh."""
    import gc

    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from training.ml.modeling import common_arguments, quiet_trainer

    args = DPOConfig(
        **common_arguments(work_dir, config),
        num_train_epochs=config.epochs,
        beta=config.kl_beta,
        # prompts_per_step is a step's whole batch: under torchrun each process takes an equal share.
        per_device_train_batch_size=config.prompts_per_step // distributed.world_size(),
        max_length=config.max_length,
        **dpo_loss(config),
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
    model = trainer.model
    trainer.accelerator.free_memory()
    del trainer
    gc.collect()
    return model


def _scores(scorer, conversations, answers, n: int) -> list[float]:
    """The reward model's score of every answer, in the answers' order (n per prompt)."""
    from training.ml.reward_data import Ranking

    groups = [
        Ranking(conversation, [a.text for a in answers[i * n : (i + 1) * n]], [1] * n)
        for i, conversation in enumerate(conversations)
    ]
    return [score for group in scorer.score_rankings(groups) for score in group]


def _kls(model, reference, answers, n: int, iteration: int) -> list[float]:
    """The KL terms the stage's KL is the mean of: none needed in the first iteration, whose policy
    is the reference (0 exactly); after it, those of each prompt's first KL_ANSWERS_PER_PROMPT answers."""
    if iteration == 0:
        return []
    measured = [a for i, a in enumerate(answers) if i % n < KL_ANSWERS_PER_PROMPT]
    return answer_kls(model, reference, measured, batch_size=8)


def _means(answers, shaped: list[float], kls: list[float]) -> dict:
    """Mean shaped reward, KL (over the answers it was measured on; 0 where none was) and answer
    length over every process's answers."""
    lengths = sum(len(a.token_ids) for a in answers)
    reward, kl, measured, length, count = distributed.sum_across(
        [sum(shaped), sum(kls), len(kls), lengths, len(answers)]
    )
    count = max(count, 1)
    return {"reward": reward / count, "kl": kl / max(measured, 1), "mean_length": length / count}


def iterative_dpo(
    records, sft_model_path: str, reward_model_path: str, work_dir: str, config, progress, should_stop, *, sampler: str
):
    """Train; return (model, tokenizer, history, cancelled, note, shaping). history: one entry per
    iteration with reward (mean shaped reward of its samples), kl, mean_length, pairs and loss;
    shaping: what the reward shaping used (RewardShaper.record)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ml.evaluate import as_conversation
    from training.ml.generation import pick_device
    from training.ml.modeling import dpo_metrics
    from training.ml.reward import RewardScorer

    every_conversation = [as_conversation(row["prompt"]) for row in prompts_from_records(records)]
    processes = distributed.world_size()
    if not every_conversation:
        raise ValueError("iterative_dpo needs at least one prompt")
    if len(every_conversation) < processes:
        raise ValueError(f"iterative_dpo under {processes} processes needs at least {processes} prompts")
    conversations = distributed.shard(every_conversation)
    device = pick_device()[0]
    tokenizer = AutoTokenizer.from_pretrained(sft_model_path)
    model = AutoModelForCausalLM.from_pretrained(sft_model_path, dtype="float32").to(device)
    reference = AutoModelForCausalLM.from_pretrained(sft_model_path, dtype="float32").to(device).eval()
    scorer = RewardScorer(reward_model_path)
    shaper = RewardShaper(normalize=config.reward_normalize, length_control=config.length_control)
    sample = VLLMSampler(sft_model_path, config) if sampler == "vllm" else _sample
    history, n, note = [], config.generations_per_prompt, None
    for iteration in range(config.iterations):
        answers = sample(model, tokenizer, conversations, config, iteration)
        scores = _scores(scorer, conversations, answers, n)
        shaped = shaper(scores, [len(a.token_ids) for a in answers])
        entry = _means(answers, shaped, _kls(model, reference, answers, n, iteration))
        # Every process's KL is the same number; process 0's verdict is still taken by all.
        if distributed.from_main(lambda kl=entry["kl"]: bool(config.kl_budget and kl > config.kl_budget)):
            history.append(entry)
            note = f"KL passed the budget of {config.kl_budget:g} nats per answer"
            break
        rows = distributed.gather(best_worst_pairs(conversations, answers, shaped, n))  # the same on every process
        entry["pairs"] = len(rows)
        if rows:
            callback = trainer_callback(lambda *_: None, should_stop, dpo_metrics)  # progress: per iteration
            model = _dpo_step(model, reference, tokenizer, rows, work_dir, config, callback)
            losses = [m["loss"] for m in callback.history if m.get("loss") is not None]
            entry["loss"] = losses[-1] if losses else None
            if callback.cancelled:
                return model, tokenizer, history + [entry], True, None, shaper.record()
        history.append(entry)
        progress(iteration + 1, config.iterations, entry)
    return model, tokenizer, history, False, note, shaper.record()
