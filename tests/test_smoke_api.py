from tests.factories import add_demonstration_task, add_ranking_task, api_client, new_client_id


def test_annotator_ranks_and_demonstrates_through_api(annotator, project):
    add_demonstration_task(project)
    add_ranking_task(project)
    client = api_client(annotator)
    seen = set()
    for _ in range(2):
        task = client.get(f"/api/v1/tasks/next/?project={project.pk}&render=html").json()
        seen.add(task["kind"])
        if task["kind"] == "ranking":
            ids = [c["id"] for c in task["candidates"]]
            body = {"ranking": [[ids[0]], ids[1:]], "ratings": {ids[0]: 7}, "client_id": new_client_id()}
            assert client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json").status_code == 201
        else:
            body = {"text": "玉山，海拔 3,952 公尺。", "client_id": new_client_id()}
            assert client.post(f"/api/v1/tasks/{task['id']}/demonstration/", body, format="json").status_code == 201
    assert seen == {"ranking", "demonstration"}
    assert client.get(f"/api/v1/tasks/next/?project={project.pk}").status_code == 204
