"""Data parallelism for the stages torchrun launches (training.ml.launch): which process this is,
and the few collectives the stages' own code needs (the reward model's training loop, the policy
stage's reward shaping and iterative DPO's loop).

In one process (no process group: a worker running a stage in-process, a notebook, a test) every
function here is the identity or a no-op, so the ML functions run exactly as they do alone. TRL's
trainers (SFT, DPO, RLOO, GRPO) shard the data and all-reduce the gradients themselves once
torch.distributed is initialised; what they leave to us is whatever our own callbacks compute.
"""

import os

GRADIENT_BUCKET_ELEMENTS = 32 * 1024 * 1024  # gradients summed per all_reduce call: 128 MB of float32


def active() -> bool:
    """True inside a process group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes in the group; before the group is initialised, what torchrun's environment says."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank in the group; 0 outside one."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """The process that reports progress and writes the checkpoint (always true alone)."""
    return rank() == 0


def init_from_environment() -> str | None:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs), each process on its own GPU.
    Returns the backend, or None when torchrun did not start this process."""
    import torch
    import torch.distributed as dist

    if "LOCAL_RANK" not in os.environ or dist.is_initialized():
        return dist.get_backend() if dist.is_initialized() else None
    backend = "gloo"
    if torch.cuda.is_available():
        local_rank, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= gpus:
            raise ValueError(f"process {local_rank} has no GPU of its own: this host has {gpus}; run at most {gpus}")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    dist.init_process_group(backend=backend)
    return backend


def _device():
    """Where a collective's tensors live: NCCL only moves GPU tensors."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def shard(items: list) -> list:
    """This process's share of a batch: every world_size-th item from its rank on (all of it alone).
    Strided, so batches grouped by length still give each process rankings of every length."""
    if not active():
        return items
    return items[rank() :: world_size()]


def sum_across(values: list[float]) -> list[float]:
    """The sums, element by element, of each process's values (the values themselves alone)."""
    if not active():
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(values: list) -> list:
    """Every process's values, concatenated in rank order: the same list on every process (the
    values themselves alone). Any picklable values; each process may have a different number."""
    if not active():
        return list(values)
    import torch.distributed as dist

    parts = [None] * world_size()
    dist.all_gather_object(parts, list(values))
    return [value for part in parts for value in part]


def sum_gradients(parameters) -> None:
    """Sum the trainable parameters' gradients over the processes, in buckets. A process that had
    nothing to back-propagate (its share of the batch was empty) adds zeros."""
    if not active():
        return
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = []
    for parameter in parameters:
        if parameter.requires_grad:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            grads.append(parameter.grad)
    for bucket in _buckets(grads):
        flat = _flatten_dense_tensors(bucket)
        dist.all_reduce(flat)
        for target, summed in zip(bucket, _unflatten_dense_tensors(flat, bucket), strict=True):
            target.copy_(summed)


def _buckets(tensors):
    """Consecutive runs of tensors of one dtype, each of at most GRADIENT_BUCKET_ELEMENTS elements
    (or one larger tensor): one all_reduce each instead of one per tensor."""
    bucket, size = [], 0
    for tensor in tensors:
        if bucket and (size + tensor.numel() > GRADIENT_BUCKET_ELEMENTS or tensor.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(tensor)
        size += tensor.numel()
    if bucket:
        yield bucket


def broadcast_parameters(model) -> None:
    """Every process starts from process 0's weights and buffers (a freshly initialised head, say)."""
    if not active():
        return
    import torch.distributed as dist

    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def from_main(compute):
    """compute() run by process 0 alone, its result handed to every process (alone: compute())."""
    if not active():
        return compute()
    import torch.distributed as dist

    box = [compute() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
