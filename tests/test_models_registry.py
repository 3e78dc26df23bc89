"""The model registry: idempotent registration, atomic deploys, rollbacks, refused deploys,
the deploy_policy / register_base_model commands, the API and the admin page."""

import shutil

import pytest
from django.core.management import CommandError, call_command

from labeling.models import Event
from tests.factories import api_client, register_copy
from training.registry import selectors, services
from training.registry.models import DeployedPolicy, Deployment, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(project, model_store, tiny_model_path, tiny_model_path_b):
    base = register_copy(project, tiny_model_path, name="base", store=model_store)
    round1 = register_copy(project, tiny_model_path_b, name="round 1", store=model_store, parent=base, round_number=1)
    return base, round1


def test_registration_records_location_hash_and_config_once(project, model_store, tiny_model_path):
    version = register_copy(project, tiny_model_path, name="base", store=model_store)
    assert version.storage_path == f"policies/{project.pk}-base"
    assert len(version.content_hash) == 64
    assert version.config["model_type"] == "llama" and version.config["parameters"] > 0
    again, created = services.model_version_register(project=project, path=version.path, name="base again")
    assert (again.pk, created) == (version.pk, False)
    assert Event.objects.filter(verb="model_version.registered").count() == 1


def test_registration_refuses_a_folder_outside_the_store(project, model_store, tiny_model_path):
    with pytest.raises(services.LabelingError, match="not inside the model store"):
        services.model_version_register(project=project, path=tiny_model_path, name="elsewhere")


def test_deploy_switches_the_pointer_and_keeps_history(project, versions, admin_user):
    base, round1 = versions
    first, switched = services.policy_deploy(version=base, actor=admin_user)
    assert switched and selectors.deployed_policy(project=project) == base
    second, _ = services.policy_deploy(version=round1, actor=admin_user)
    assert selectors.deployed_policy(project=project) == round1
    assert (second.previous, second.rollback, second.actor) == (base, False, admin_user)
    again, switched = services.policy_deploy(version=round1)
    assert not switched and again == second and Deployment.objects.count() == 2
    assert list(Event.objects.filter(verb="policy.deployed").values_list("payload__model_version_id", flat=True)) == [
        base.pk,
        round1.pk,
    ]


def test_rollback_deploys_the_version_that_was_replaced(project, versions):
    base, round1 = versions
    services.policy_deploy(version=base)
    services.policy_deploy(version=round1)
    rollback = services.policy_rollback(project=project)
    assert (rollback.model_version, rollback.previous, rollback.rollback) == (base, round1, True)
    assert selectors.deployed_policy(project=project) == base
    assert Event.objects.filter(verb="policy.rolled_back").count() == 1


def test_rollback_without_history_is_refused(project, versions):
    services.policy_deploy(version=versions[0])
    with pytest.raises(services.Conflict, match="no earlier"):
        services.policy_rollback(project=project)


def test_deploy_refuses_missing_files(project, versions):
    base, round1 = versions
    services.policy_deploy(version=base)
    shutil.rmtree(round1.path)
    with pytest.raises(services.DeployRefused, match="missing"):
        services.policy_deploy(version=round1)
    assert selectors.deployed_policy(project=project) == base and Deployment.objects.count() == 1


def test_deploy_refuses_changed_files(project, versions):
    base, round1 = versions
    with (round1.path / "config.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(services.DeployRefused, match="do not match its registered hash"):
        services.policy_deploy(version=round1)
    assert not DeployedPolicy.objects.exists()


def test_deploy_refuses_reward_models_and_unready_versions(project, versions):
    base, round1 = versions
    ModelVersion.objects.filter(pk=base.pk).update(kind=ModelVersion.Kind.REWARD)
    ModelVersion.objects.filter(pk=round1.pk).update(status=ModelVersion.Status.FAILED)
    for version in ModelVersion.objects.all():
        with pytest.raises(services.DeployRefused):
            services.policy_deploy(version=version)


def test_a_deploy_that_fails_midway_changes_nothing(project, versions, monkeypatch):
    base, round1 = versions
    services.policy_deploy(version=base)

    def broken_event(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "event_record", broken_event)
    with pytest.raises(RuntimeError):
        services.policy_deploy(version=round1)
    assert selectors.deployed_policy(project=project) == base
    assert Deployment.objects.count() == 1


def test_lineage_is_a_tree_with_the_deployed_version_marked(project, versions):
    base, round1 = versions
    services.policy_deploy(version=round1)
    rows = selectors.version_lineage(project=project)
    assert [(row.version, row.depth, row.deployed) for row in rows] == [(base, 0, False), (round1, 1, True)]


def test_deploy_policy_command_deploys_and_rolls_back(project, versions, capsys):
    base, round1 = versions
    call_command("deploy_policy", str(base.pk))
    call_command("deploy_policy", str(round1.pk))
    call_command("deploy_policy", "--rollback", project.name)
    assert selectors.deployed_policy(project=project) == base
    assert "Rolled back" in capsys.readouterr().out
    shutil.rmtree(round1.path)
    with pytest.raises(CommandError, match="missing"):
        call_command("deploy_policy", str(round1.pk))


def test_register_base_model_from_a_hf_folder_is_idempotent(project, model_store, tiny_model_path, capsys):
    for _ in range(2):
        call_command("register_base_model", "--hf", str(tiny_model_path), "--project", project.name, "--deploy")
    version = ModelVersion.objects.get()
    assert selectors.deployed_policy(project=project) == version
    assert version.path.is_relative_to(model_store / "base") and version.parent is None
    out = capsys.readouterr().out
    assert "Already registered" in out and "Already deployed" in out


def test_register_base_model_again_keeps_a_later_deploy(project, versions, model_store, tiny_model_path, capsys):
    call_command("register_base_model", "--hf", str(tiny_model_path), "--project", project.name, "--deploy")
    base = selectors.deployed_policy(project=project)
    services.policy_deploy(version=versions[1])
    call_command("register_base_model", "--hf", str(tiny_model_path), "--project", project.name, "--deploy")
    assert selectors.deployed_policy(project=project) == versions[1] != base
    assert "Kept the deployed policy" in capsys.readouterr().out


# --- API and pages -------------------------------------------------------------------------------


def test_api_lists_versions_for_researchers_and_admins_only(project, versions, researcher, admin_user, annotator):
    services.policy_deploy(version=versions[0])
    url = f"/api/v1/model-versions/?project={project.pk}"
    body = api_client(researcher).get(url).json()
    assert [(v["id"], v["deployed"], v["parent"]) for v in body] == [
        (versions[0].pk, True, None),
        (versions[1].pk, False, versions[0].pk),
    ]
    assert body[0]["content_hash"] == versions[0].content_hash
    assert api_client(admin_user).get(url).status_code == 200
    assert api_client(annotator).get(url).status_code == 403
    assert api_client().get(url).status_code in (401, 403)


def test_api_deploy_is_for_staff_and_explains_refusals(project, versions, researcher, admin_user):
    base, round1 = versions
    url = f"/api/v1/model-versions/{round1.pk}/deploy/"
    assert api_client(researcher).post(url).status_code == 403
    response = api_client(admin_user).post(url)
    assert response.status_code == 200 and response.json()["deployed"] is True
    assert selectors.deployed_policy(project=project) == round1
    shutil.rmtree(base.path)
    refused = api_client(admin_user).post(f"/api/v1/model-versions/{base.pk}/deploy/")
    assert refused.status_code == 409 and "missing" in refused.json()["detail"]


def test_versions_page_shows_lineage_and_deploys_for_admins(client, project, versions, admin_user, annotator):
    base, round1 = versions
    services.policy_deploy(version=base)
    url = f"/projects/{project.pk}/models/"
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    assert client.post(f"{url}{round1.pk}/deploy/").status_code == 403
    client.force_login(admin_user)
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "round 1" in html and "Deployed" in html
    response = client.post(f"{url}{round1.pk}/deploy/", {"confirm": "yes"})  # the confirmation page's form
    assert response.status_code == 302
    assert selectors.deployed_policy(project=project) == round1
    client.post(f"{url}{base.pk}/deploy/", {"confirm": "yes"})
    assert Deployment.objects.first().rollback is True
