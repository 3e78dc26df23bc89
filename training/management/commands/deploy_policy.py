from django.core.management.base import BaseCommand, CommandError

from labeling.errors import LabelingError
from labeling.selectors import project_by_name_or_id
from training.registry import services
from training.registry.models import ModelVersion


class Command(BaseCommand):
    help = "Deploy a policy version (rolling back is deploying an earlier one), or --rollback a project."

    def add_arguments(self, parser):
        parser.add_argument("version", nargs="?", type=int, help="Model version id.")
        parser.add_argument("--rollback", metavar="PROJECT", help="Deploy again the version the current one replaced.")

    def handle(self, *args, **opts):
        try:
            if opts["rollback"]:
                project = project_by_name_or_id(opts["rollback"])
                if project is None:
                    raise CommandError(f"No project {opts['rollback']!r}.")
                deployment = services.policy_rollback(project=project)
                self.stdout.write(f"Rolled back {project.name} to {deployment.model_version}.")
                return
            if opts["version"] is None:
                raise CommandError("Give a VERSION id, or --rollback PROJECT.")
            version = ModelVersion.objects.select_related("project").filter(pk=opts["version"]).first()
            if version is None:
                raise CommandError(f"No model version {opts['version']}.")
            deployment, switched = services.policy_deploy(version=version)
        except LabelingError as error:
            raise CommandError(error.message) from None
        if switched:
            kind = "Rolled back to" if deployment.rollback else "Deployed"
            self.stdout.write(f"{kind} {version} for {version.project.name} (was v{deployment.previous_id}).")
        else:
            self.stdout.write(f"{version} is already deployed for {version.project.name}.")
