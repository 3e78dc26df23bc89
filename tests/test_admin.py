"""The Django admin as an admin uses it: adding a prompt makes a task; the audit log is read-only."""

import pytest

from labeling.models import Prompt, Task

pytestmark = pytest.mark.django_db


def test_admin_adds_a_prompt_with_its_demonstration_task(client, admin_user, project):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    response = client.post(
        "/admin/labeling/prompt/add/",
        {"project": project.pk, "messages": '"台灣最長的河流是哪一條？"', "source": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    prompt = Prompt.objects.get()
    assert prompt.messages == [{"role": "user", "content": "台灣最長的河流是哪一條？"}]
    assert Task.objects.get().prompt == prompt


def test_admin_prompt_form_explains_a_bad_conversation(client, admin_user, project):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    bad = '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]'
    response = client.post("/admin/labeling/prompt/add/", {"project": project.pk, "messages": bad})
    assert response.status_code == 200
    assert b"must end with a user message" in response.content
    assert not Prompt.objects.exists()


def test_admin_imports_a_prompt_file(client, admin_user, project):
    from django.core.files.uploadedfile import SimpleUploadedFile

    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    upload = SimpleUploadedFile("p.jsonl", '{"prompt": "一"}\nnot json\n{"prompt": "two"}\n'.encode())
    response = client.post(f"/admin/labeling/project/{project.pk}/import/", {"file": upload}, follow=True)
    assert Prompt.objects.count() == 2
    assert b"line 2: not valid JSON" in response.content.replace(b"Line 2", b"line 2")
